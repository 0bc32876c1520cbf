"""The exploration vocabulary shared by the PFD and distillation workchains: stages of MD task groups."""

from __future__ import annotations

from aiida import orm
from aiida.plugins import CalculationFactory

from ..calculations.md_ase import PARAMETER_KEYS, check_parameters
from ..data.operations import merge_datasets
from ..structures import STRUCTURE_KEYS, check_structure_keys, generate_structures, needs_generation
from ..validation import unknown_keys

AseMdCalculation = CalculationFactory('pfd.md.ase')

#: The keys of a task group: the ``pfd.md.ase`` parameters, ``structures`` (names) and the structure keys.
TASK_GROUP_KEYS = frozenset({*PARAMETER_KEYS, 'structures', *STRUCTURE_KEYS})


def validate_exploration(value, _=None) -> str | None:
    """``exploration``: ``{'stages': [[task group, ...], ...]}``; each task group is ``pfd.md.ase`` parameters plus
    an optional ``structures`` list of names and the structure keys of :mod:`aiida_pfd.structures` (``supercell``,
    ``defects``, ``strains``). Task groups are numbered across the stages, from 0."""
    stages = value.get('stages') if value is not None else None
    if not stages or not all(isinstance(stage, list) and stage for stage in stages):
        return 'exploration: give `stages`, a non-empty list of non-empty lists of task groups.'
    problem = unknown_keys('exploration', value.get_dict(), ('stages',))
    if problem:
        return problem
    for index, group in enumerate(group for stage in stages for group in stage):
        problem = check_task_group(group)
        if problem:
            return f'exploration: task group {index}: {problem}'
    return None


def check_task_group(group) -> str | None:
    """What is wrong with one task group (naming the key and the fix), or None."""
    if not isinstance(group, dict):
        return f'give a dictionary of `pfd.md.ase` parameters, not {group!r}.'
    problem = unknown_keys('', group, TASK_GROUP_KEYS)
    if problem:
        return problem
    if 'temperatures' not in group or 'nsteps' not in group:
        return 'give at least `temperatures` and `nsteps`.'
    names = group.get('structures', [])
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return f'`structures` is {names!r}: give a list of names of the input structures (empty: all of them).'
    return check_structure_keys(group) or check_parameters(md_parameters(group))


def md_parameters(group: dict) -> dict:
    """The ``pfd.md.ase`` parameters of a task group: all its keys but ``structures`` and the structure keys."""
    return {key: value for key, value in group.items() if key not in ('structures', *STRUCTURE_KEYS)}


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
    parameters = md_parameters(group)
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


def submit_task_groups(process, groups, model, seed_of, label_of, key_prefix: str, options=None, head=None) -> dict:
    """Submit one ``pfd.md.ase`` job per task group on ``process``'s ``structures`` with its ``python`` code:
    ``{key_prefix + NNN: node}``, seeded by ``seed_of(index)`` and labelled ``label_of(index)``."""
    jobs = {}
    for index, group in enumerate(groups):
        inputs = md_inputs(
            group,
            process.inputs.structures,
            model,
            process.inputs.codes['python'],
            seed=seed_of(index),
            label=label_of(index),
            options=options,
            head=head,
        )
        jobs[f'{key_prefix}{index:03d}'] = process.submit(AseMdCalculation, **inputs)
    return jobs


def merged_frames(frames: dict):
    """The datasets of ``frames`` merged in key order (the one dataset itself when there is one)."""
    return merge_datasets(**frames) if len(frames) > 1 else next(iter(frames.values()))


def explored_frames(process, key_prefix: str):
    """The frames of the MD jobs in ``process.ctx`` under ``key_prefix`` keys, merged, or None; each job that did not
    finish well is reported (an unstable one, exit 400, keeps the frames before the blow-up)."""
    frames = {}
    for key in sorted(key for key in process.ctx if key.startswith(key_prefix)):
        node = process.ctx[key]
        if 'frames' in node.outputs:
            frames[key] = node.outputs.frames
        if not node.is_finished_ok:
            process.report(f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}')
    return merged_frames(frames) if frames else None
