"""The exploration vocabulary shared by the PFD and distillation workchains: stages of MD task groups."""

from __future__ import annotations

from aiida import orm
from aiida.plugins import CalculationFactory

from ..structures import STRUCTURE_KEYS, check_structure_keys, generate_structures, needs_generation

AseMdCalculation = CalculationFactory('pfd.md.ase')


def validate_exploration(value, _=None) -> str | None:
    """``exploration``: ``{'stages': [[task group, ...], ...]}``; each task group is ``pfd.md.ase`` parameters plus
    an optional ``structures`` list of names and the structure keys of :mod:`aiida_pfd.structures` (``supercell``,
    ``defects``, ``strains``)."""
    stages = value.get('stages') if value is not None else None
    if not stages or not all(isinstance(stage, list) and stage for stage in stages):
        return 'exploration: give `stages`, a non-empty list of non-empty lists of task groups.'
    for index, group in enumerate(group for stage in stages for group in stage):
        if not isinstance(group, dict) or 'temperatures' not in group or 'nsteps' not in group:
            return f'exploration: task group {index} needs at least `temperatures` and `nsteps`.'
        problem = check_structure_keys(group)
        if problem:
            return f'exploration: task group {index}: {problem}'
    return None


def unknown_structures(exploration: orm.Dict | None, structures) -> list[str]:
    """Names used by the task groups of ``exploration`` that are not keys of ``structures``."""
    if exploration is None:
        return []
    named = {name for stage in exploration.get('stages', []) for group in stage for name in group.get('structures', [])}
    return sorted(named - set(structures))


def group_structures(group: dict, structures) -> dict:
    """The structures a task group runs: its ``structures`` by name (else all), each turned into the supercells,
    defects and strained cells its structure keys ask for (:func:`aiida_pfd.structures.generate_structures`)."""
    names = group.get('structures') or sorted(structures)
    if not needs_generation(group):
        return {name: structures[name] for name in names}
    keys = {key: group[key] for key in STRUCTURE_KEYS if group.get(key)}
    derived = {}
    for name in names:
        derived.update(generate_structures(structures[name], orm.Dict({'name': name, **keys})))
    return derived


def md_inputs(group: dict, structures, model, code, seed: int, label: str, options: dict | None = None, head=None):
    """``pfd.md.ase`` inputs of one task group (:func:`group_structures`), seeded by ``seed`` unless the group sets
    its own."""
    parameters = {key: value for key, value in group.items() if key not in ('structures', *STRUCTURE_KEYS)}
    parameters.setdefault('seed', seed)
    inputs = {
        'code': code,
        'model': model,
        'structures': group_structures(group, structures),
        'parameters': orm.Dict(parameters),
        'metadata': {'call_link_label': label, 'options': dict(options or {})},
    }
    if head is not None:
        inputs['model_head'] = head
    return inputs
