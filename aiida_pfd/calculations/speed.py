"""``pfd.speed``: time molecular dynamics with several models on the same supercells, side by side.

For each target size the job builds one supercell of ``structure`` and runs, with every model from the same initial
velocities, ``warmup`` untimed then ``steps`` timed velocity-Verlet steps; the output compares the median time per
step and per atom-step across models (see :mod:`aiida_pfd.scripts.speed`).

``parameters`` (all optional):

======================  ================================================================================================
key                     meaning (default)
======================  ================================================================================================
``sizes``               target atom counts, positive integers; each becomes the supercell of the repetition of
                        ``structure`` closest to it ([64, 512])
``steps``               timed MD steps per model and size, integer >= 1 (10)
``warmup``              untimed MD steps before them, integer >= 0; they absorb one-time costs (compilation) (3)
``timestep``            time step in fs, > 0 (1.0)
``temperature``         temperature in K of the Maxwell-Boltzmann initial velocities, >= 0 (300)
``seed``                integer >= 0 seeding the velocities; size ``i`` uses ``numpy.random.default_rng([seed, i])``
                        (0)
``baseline``            name of the model that ``speedup`` is relative to (the first model name in sorted order)
``max_step_seconds``    optional bound, > 0: a model whose last warm-up step (first timed step when ``warmup`` is 0)
                        takes longer is skipped at this size and at every larger one, with null entries (null)
======================  ================================================================================================

Exit codes:

===  ===============================  =================================================================================
301  ERROR_MISSING_OUTPUT             ``speed.json`` was not written
302  ERROR_SCRIPT_FAILED              the script raised an exception (traceback in the scheduler's standard error)
310  ERROR_OUTPUT_PARSING             ``speed.json`` could not be read, lacks an entry or a list lacks a size
400  ERROR_NON_FINITE_PREDICTIONS     a model returned NaN or infinite energies or forces during the dynamics
===  ===============================  =================================================================================
"""

from __future__ import annotations

import numbers

from aiida import orm
from aiida.engine.processes.calcjobs.calcjob import validate_calc_job

from ..data import ModelData
from .script import ScriptCalculation, structure_dict, validate_model

#: Defaults of ``parameters`` (``baseline`` defaults to the first model name in sorted order).
DEFAULTS = {
    'sizes': [64, 512],
    'steps': 10,
    'warmup': 3,
    'timestep': 1.0,
    'temperature': 300.0,
    'seed': 0,
    'baseline': None,
    'max_step_seconds': None,
}


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_parameters(parameters: dict) -> str | None:
    """Return what is wrong with ``parameters`` (naming the key and the fix), or None."""
    unknown = sorted(set(parameters) - set(DEFAULTS))
    if unknown:
        return f'unknown keys {unknown}: the keys are {sorted(DEFAULTS)}.'
    sizes = parameters.get('sizes', DEFAULTS['sizes'])
    if not isinstance(sizes, list) or not sizes or not all(_is_int(size) and size > 0 for size in sizes):
        return f'`sizes` is {sizes!r}: give a non-empty list of target atom counts, positive integers.'
    steps = parameters.get('steps', DEFAULTS['steps'])
    if not _is_int(steps) or steps < 1:
        return f'`steps` is {steps!r}: give the number of timed MD steps, an integer >= 1.'
    for key in ('warmup', 'seed'):
        value = parameters.get(key, DEFAULTS[key])
        if not _is_int(value) or value < 0:
            return f'`{key}` is {value!r}: give an integer >= 0.'
    timestep = parameters.get('timestep', DEFAULTS['timestep'])
    if not _is_real(timestep) or timestep <= 0:
        return f'`timestep` is {timestep!r}: give a number > 0 (in fs).'
    temperature = parameters.get('temperature', DEFAULTS['temperature'])
    if not _is_real(temperature) or temperature < 0:
        return f'`temperature` is {temperature!r}: give a number >= 0 (in K).'
    bound = parameters.get('max_step_seconds')
    if bound is not None and not (_is_real(bound) and bound > 0):
        return f'`max_step_seconds` is {bound!r}: give a number of seconds > 0, or leave it out for no bound.'
    baseline = parameters.get('baseline')
    if baseline is not None and not isinstance(baseline, str):
        return f'`baseline` is {baseline!r}: give the name of one of the `models`.'
    return None


def resolve_parameters(parameters: dict, model_names: list[str]) -> dict:
    """``parameters`` (valid) with every default filled in, as the script reads them."""
    resolved = {**DEFAULTS, **parameters}
    if resolved['baseline'] is None:
        resolved['baseline'] = sorted(model_names)[0]
    resolved['timestep'] = float(resolved['timestep'])
    resolved['temperature'] = float(resolved['temperature'])
    return resolved


def validate_parameters(value: orm.Dict | None, _) -> str | None:
    """Port validator of ``parameters``."""
    problem = check_parameters(value.get_dict()) if value is not None else None
    return f'`parameters`: {problem}' if problem else None


def validate_inputs(inputs: dict, ctx) -> str | None:
    """At least one model; ``model_heads`` that fit them; every element in each type map; a known ``baseline``."""
    message = validate_calc_job(inputs, ctx)
    if message or 'models' not in ctx:
        return message
    models = inputs.get('models') or {}
    if not models:
        return '`models`: give at least one model (a `pfd.model` keyed by name, e.g. `models.teacher`).'
    heads = inputs['model_heads'].get_dict() if 'model_heads' in inputs else {}
    unknown = sorted(set(heads) - set(models))
    if unknown:
        return (
            f'`model_heads` names {unknown}, which are not in `models` {sorted(models)}: remove them or fix the names.'
        )
    structure = inputs.get('structure')
    elements = sorted(structure.get_symbols_set()) if structure is not None else []
    for name in sorted(models):
        if not isinstance(models[name], ModelData):
            continue
        head = heads.get(name)
        problem = validate_model(models[name], orm.Str(head) if head is not None else None, 'structure', elements)
        if problem:
            # Name the port of this model: `models.<name>` and `model_heads.<name>` instead of `model` and `model_head`.
            problem = problem.replace('`model_head`', f'`model_heads.{name}`').replace('`model`', f'`models.{name}`')
            return problem
    baseline = inputs['parameters'].get('baseline') if 'parameters' in inputs else None
    if baseline is not None and baseline not in models:
        return f'`parameters`: `baseline` is {baseline!r}, which is not one of the `models` {sorted(models)}.'
    return None


class SpeedCalculation(ScriptCalculation):
    """Time MD with each model of ``models`` on supercells of ``structure``; output ``speed``, a side-by-side table.

    The parameter schema is in this module's docstring.
    """

    SCRIPT = 'speed'
    RETRIEVE = ['speed.json']

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['metadata']['options']['parser_name'].default = 'pfd.speed'
        spec.input_namespace(
            'models',
            valid_type=ModelData,
            dynamic=True,
            help='The models to time (any `pfd.model` backend), keyed by name, e.g. `teacher` and `student`.',
        )
        spec.input(
            'model_heads',
            valid_type=orm.Dict,
            required=False,
            help='Head (branch) of each multi-task model: `{model name: head}`; required for the models with heads.',
        )
        spec.input('structure', valid_type=orm.StructureData, help='The unit that is repeated into each supercell.')
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            required=False,
            validator=validate_parameters,
            help='Target sizes, steps, warm-up, time step, temperature, seed, baseline, max_step_seconds: see the '
            'module docs.',
        )
        spec.inputs.validator = validate_inputs
        spec.output(
            'speed',
            valid_type=orm.Dict,
            help='Per size: n_atoms, repetitions; per model: median_step_seconds, ms_per_atom_step, step_seconds '
            '(null where skipped) and speedup relative to `baseline`; threads, cpu_count, node and `units`.',
        )
        spec.exit_code(
            400,
            'ERROR_NON_FINITE_PREDICTIONS',
            invalidates_cache=True,
            message='The predictions are not finite: {message}',
        )

    def script_parameters(self) -> dict:
        models = self.inputs.models
        heads = self.inputs.model_heads.get_dict() if 'model_heads' in self.inputs else {}
        parameters = self.inputs.parameters.get_dict() if 'parameters' in self.inputs else {}
        return {
            'models': {
                name: {
                    'backend': models[name].model_backend,
                    'path': self.model_path(f'models__{name}', models[name]),
                    'head': heads.get(name),
                }
                for name in sorted(models)
            },
            'structure': structure_dict(self.inputs.structure),
            **resolve_parameters(parameters, list(models)),
        }
