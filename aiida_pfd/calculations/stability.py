"""``pfd.stability``: is a model safe to hand over for MD? NVT at each temperature in a large cell, then NVE.

``parameters`` (units: ps, fs, K; the checks are described in :mod:`aiida_pfd.scripts.stability`):

=========================  ============================================================================================
key                        meaning (default)
=========================  ============================================================================================
``temperatures``           list of NVT temperatures in K, each > 0 (required)
``min_atoms``              the structure is repeated to at least this many atoms (512)
``nvt_time``               NVT (Langevin) time per temperature in ps, > 0 (10.0)
``nve_time``               NVE (velocity Verlet) time after the NVT in ps, >= 0 (2.0)
``timestep``               time step in fs, > 0 (2.0)
``friction``               Langevin friction in 1/fs, > 0 (0.01)
``thermo_every``           a thermo row and the distance check every this many steps, integer >= 1 (10)
``equilibration``          NVT time in ps before the temperature is checked, >= 0 and < ``nvt_time`` (1.0)
``min_distance_fraction``  the closest pair must stay above this x its covalent-radius sum, in (0, 1] (0.6)
``temperature_tolerance``  largest relative deviation from the NVT target after the equilibration, > 0 (0.25)
``max_energy_drift``       largest NVE drift of the total energy in meV/atom/ps, > 0 (1.0)
``seed``                   integer >= 0 seeding the velocities and the Langevin noise (0)
=========================  ============================================================================================

Outputs: ``results`` (per run: ``temperature``, ``n_atoms``, ``simulated_ps``, ``min_distance`` (Å) and
``min_distance_ratio``, ``temperature_mean``, ``temperature_max_excursion``, ``energy_drift`` (meV/atom/ps),
``checks`` {finite, min_distance, temperature, energy_drift}, ``passed``, ``message``; and overall ``passed``,
``supercell``, ``n_atoms``), ``thermo`` (one array per run). A run that fails a check gives exit 400
``ERROR_MODEL_UNSTABLE`` with all outputs attached.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine.processes.calcjobs.calcjob import validate_calc_job

from .md_ase import _is_int, _is_real
from .script import ScriptCalculation, define_model_inputs, structure_dict, validate_model

DEFAULTS = {
    'min_atoms': 512,
    'nvt_time': 10.0,
    'nve_time': 2.0,
    'timestep': 2.0,
    'friction': 0.01,
    'thermo_every': 10,
    'equilibration': 1.0,
    'min_distance_fraction': 0.6,
    'temperature_tolerance': 0.25,
    'max_energy_drift': 1.0,
    'seed': 0,
}
#: key -> (predicate, what to give)
_RULES = {
    'min_atoms': (lambda v: _is_int(v) and v >= 1, 'an integer >= 1'),
    'nvt_time': (lambda v: _is_real(v) and v > 0, 'a time in ps > 0'),
    'nve_time': (lambda v: _is_real(v) and v >= 0, 'a time in ps >= 0'),
    'timestep': (lambda v: _is_real(v) and v > 0, 'a time step in fs > 0'),
    'friction': (lambda v: _is_real(v) and v > 0, 'a friction in 1/fs > 0'),
    'thermo_every': (lambda v: _is_int(v) and v >= 1, 'an integer >= 1'),
    'equilibration': (lambda v: _is_real(v) and v >= 0, 'a time in ps >= 0'),
    'min_distance_fraction': (lambda v: _is_real(v) and 0 < v <= 1, 'a fraction in (0, 1]'),
    'temperature_tolerance': (lambda v: _is_real(v) and v > 0, 'a relative tolerance > 0'),
    'max_energy_drift': (lambda v: _is_real(v) and v > 0, 'a drift in meV/atom/ps > 0'),
    'seed': (lambda v: _is_int(v) and v >= 0, 'an integer >= 0'),
}


def check_parameters(parameters: dict) -> str | None:
    """What is wrong with ``parameters`` (naming the key and the fix), or None."""
    unknown = sorted(set(parameters) - set(DEFAULTS) - {'temperatures'})
    if unknown:
        return f'unknown keys {unknown}: the keys are {sorted({"temperatures", *DEFAULTS})}.'
    temperatures = parameters.get('temperatures')
    if not isinstance(temperatures, list) or not temperatures or not all(_is_real(v) and v > 0 for v in temperatures):
        return f'`temperatures` is {temperatures!r}: give a non-empty list of temperatures in K, each > 0.'
    for key, (valid, what) in _RULES.items():
        if key in parameters and not valid(parameters[key]):
            return f'`{key}` is {parameters[key]!r}: give {what}.'
    resolved = {**DEFAULTS, **parameters}
    if resolved['equilibration'] >= resolved['nvt_time']:
        return f'`equilibration` {resolved["equilibration"]} ps is not shorter than `nvt_time`: shorten it.'
    steps = resolved['nvt_time'] * 1000 / resolved['timestep']
    if steps < resolved['thermo_every']:
        return f'`nvt_time` {resolved["nvt_time"]} ps is shorter than one thermo interval: lengthen it.'
    return None


def validate_parameters(value: orm.Dict, _) -> str | None:
    problem = check_parameters(value.get_dict())
    return f'`parameters`: {problem}' if problem else None


def validate_inputs(inputs: dict, ctx) -> str | None:
    message = validate_calc_job(inputs, ctx)
    if message or 'model' not in inputs or 'structure' not in inputs:
        return message
    structure = inputs['structure']
    if not all(structure.pbc):
        return '`structure`: give a cell periodic along all three axes (it is repeated to `min_atoms`).'
    return validate_model(inputs['model'], inputs.get('model_head'), 'structure', structure.get_symbols_set())


class StabilityCalculation(ScriptCalculation):
    """Run a model in NVT at each temperature and then NVE, in a supercell of at least ``min_atoms`` atoms, and check
    that atoms stay apart, the temperature holds and the energy is conserved. Schema: the module docstring."""

    SCRIPT = 'stability'
    RETRIEVE = ['results.json', 'thermo']

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['metadata']['options']['parser_name'].default = 'pfd.stability'
        define_model_inputs(spec, help='The model to test.')
        spec.input('structure', valid_type=orm.StructureData, help='A periodic cell, repeated to `min_atoms`.')
        spec.input('parameters', valid_type=orm.Dict, validator=validate_parameters, help='See the module docs.')
        spec.inputs.validator = validate_inputs
        spec.output('results', valid_type=orm.Dict, help='Per run: measurements, named checks, passed; overall passed.')
        spec.output(
            'thermo',
            valid_type=orm.ArrayData,
            help='One array per run (`run_000`...); the column names are the attribute `columns`.',
        )
        spec.exit_code(
            400,
            'ERROR_MODEL_UNSTABLE',
            invalidates_cache=True,
            message='The model failed the stability checks (outputs attached): {message}',
        )

    def script_parameters(self) -> dict:
        return {
            'model': self.model_parameters(),
            'structure': structure_dict(self.inputs.structure),
            **DEFAULTS,
            **self.inputs.parameters.get_dict(),
        }
