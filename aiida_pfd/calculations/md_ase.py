"""``pfd.md.ase``: molecular dynamics with a ``pfd.model`` through ASE, to explore configurations.

Each (structure, temperature[, pressure]) combination is one task; tasks run one after the other in the job, each from
its structure. The frames sampled along the trajectories, labelled by the model, become the ``frames`` output.

``parameters`` (units: fs, K, bar, Å, eV):

=====================  =================================================================================================
key                    meaning (default)
=====================  =================================================================================================
``ensemble``           ``'nvt'`` or ``'npt'`` (``'nvt'``)
``temperatures``       list of temperatures in K, each > 0 (required)
``pressures``          list of pressures in bar; required for ``npt``, not allowed for ``nvt``
``thermostat``         ``nvt`` only: ``'langevin'`` (``ase.md.langevin.Langevin``) or ``'nose_hoover_chain'``
                       (``ase.md.nose_hoover_chain.NoseHooverChainNVT``) (``'langevin'``)
``barostat``           ``npt`` only: ``'mtk'`` (Martyna-Tobias-Klein with Nose-Hoover chains,
                       ``ase.md.nose_hoover_chain.IsotropicMTKNPT`` / ``MTKNPT``) or ``'berendsen'``
                       (``ase.md.nptberendsen.NPTBerendsen`` / ``Inhomogeneous_NPTBerendsen``) (``'mtk'``)
``isotropic``          ``npt`` only: scale the volume only (True) or let the cell shape change as well: ``MTKNPT``
                       (fully flexible cell) / ``Inhomogeneous_NPTBerendsen`` (each axis) (True)
``timestep``           time step in fs, > 0 (1.0)
``nsteps``             MD steps per task, integer > 0 (required)
``sample_every``       sample a frame every this many steps: steps ``sample_every, 2 sample_every, ... <= nsteps``, so
                       ``nsteps // sample_every`` frames per stable task (step 0, the input structure, is not sampled);
                       integer in [1, nsteps] (``max(1, nsteps // 10)``)
``thermo_every``       write a thermo row every this many steps, step 0 included; integer in [1, nsteps]
                       (``sample_every``)
``seed``               integer >= 0 seeding the velocities and the Langevin noise; task ``i`` uses
                       ``numpy.random.default_rng([seed, i])`` (0)
``friction``           Langevin friction in 1/fs, > 0; ``langevin`` only (0.01)
``peak_temperature``   heat-quench, ``langevin`` only: the thermostat's target rises linearly from the task's
                       temperature to this one (K, above every task temperature) over the first 40 % of the steps,
                       holds for 20 % and falls back over the last 40 % (null: constant temperature)
``tdamp``              thermostat time constant in fs, > 0; ``nose_hoover_chain`` and ``npt`` (100 timesteps)
``pdamp``              barostat time constant in fs, > 0; ``npt`` only (1000 timesteps)
``compressibility``    compressibility in 1/bar, > 0; ``berendsen`` only (1e-6, a typical solid)
``min_distance``       blow-up bound in Å: a task is unstable once two atoms (periodic images included) are closer
                       than this; null: 0.5 x the pair's covalent-radius sum (``ase.data.covalent_radii``) (null)
``max_force``          optional bound in eV/Å: a task is unstable once an atom's force exceeds it (null: no bound)
=====================  =================================================================================================

A task is also unstable when its energy, forces, positions or cell stop being finite. An unstable task ends at that
step and keeps the frames and thermo rows before it; the other tasks still run, and the job then finishes with
``ERROR_UNSTABLE_TRAJECTORY`` with all outputs attached.

Exit codes: 301 no ``tasks.json`` (the job was killed or never ran), 302 the script raised (last traceback line), 310
unreadable ``tasks.json`` / thermo log / frames, 320 no frame sampled at all, 400 a task became unstable.
"""

from __future__ import annotations

import numbers
import typing as t

from aiida import orm
from aiida.engine.processes.calcjobs.calcjob import validate_calc_job

from ..data import LabeledDataset, ModelData
from ..validation import did_you_mean
from .script import ScriptCalculation, define_model_inputs, structure_dict, validate_model

ENSEMBLES = ('nvt', 'npt')
THERMOSTATS = ('langevin', 'nose_hoover_chain')
BAROSTATS = ('mtk', 'berendsen')

#: Keys allowed per ensemble / thermostat / barostat (besides the common ones).
_COMMON = {'ensemble', 'temperatures', 'timestep', 'nsteps', 'sample_every', 'thermo_every', 'seed', 'min_distance'}
_COMMON |= {'max_force'}
_ONLY_FOR = {
    'pressures': "`ensemble` 'npt'",
    'barostat': "`ensemble` 'npt'",
    'isotropic': "`ensemble` 'npt'",
    'pdamp': "`ensemble` 'npt'",
    'thermostat': "`ensemble` 'nvt' (with 'npt' the barostat brings its own thermostat)",
    'friction': "`thermostat` 'langevin'",
    'peak_temperature': "`thermostat` 'langevin'",
    'tdamp': "`thermostat` 'nose_hoover_chain' or `ensemble` 'npt'",
    'compressibility': "`barostat` 'berendsen'",
}

#: Every key of ``parameters``.
PARAMETER_KEYS = frozenset(_COMMON | set(_ONLY_FOR))


def _allowed_keys(parameters: dict) -> set[str]:
    if parameters.get('ensemble', 'nvt') == 'npt':
        keys = {'pressures', 'barostat', 'isotropic', 'pdamp', 'tdamp'}
        if parameters.get('barostat', 'mtk') == 'berendsen':
            keys.add('compressibility')
    else:
        keys = {'thermostat'}
        if parameters.get('thermostat', 'langevin') == 'langevin':
            keys |= {'friction', 'peak_temperature'}
        else:
            keys.add('tdamp')
    return _COMMON | keys


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_parameters(parameters: dict) -> str | None:
    """Return what is wrong with ``parameters`` (naming the key and the fix), or None."""
    unknown = sorted(set(parameters) - PARAMETER_KEYS)
    if unknown:
        close = {key: match for key in unknown if (match := did_you_mean(key, PARAMETER_KEYS))}
        meant = ', '.join(f'`{match}` for `{key}`' for key, match in close.items())
        meant = f' (did you mean {meant}?)' if meant else ''
        return f'unknown keys {unknown}{meant}: the keys are {sorted(PARAMETER_KEYS)}.'

    ensemble = parameters.get('ensemble', 'nvt')
    if ensemble not in ENSEMBLES:
        return f'`ensemble` is {ensemble!r}: choose one of {list(ENSEMBLES)}.'
    if ensemble == 'nvt' and parameters.get('thermostat', 'langevin') not in THERMOSTATS:
        return f'`thermostat` is {parameters["thermostat"]!r}: choose one of {list(THERMOSTATS)}.'
    if ensemble == 'npt' and parameters.get('barostat', 'mtk') not in BAROSTATS:
        return f'`barostat` is {parameters["barostat"]!r}: choose one of {list(BAROSTATS)}.'
    misplaced = sorted(set(parameters) - _allowed_keys(parameters))
    if misplaced:
        key = misplaced[0]
        return f'`{key}` applies only with {_ONLY_FOR[key]}: remove it or change the ensemble/thermostat/barostat.'

    temperatures = parameters.get('temperatures')
    if not isinstance(temperatures, list) or not temperatures or not all(_is_real(v) and v > 0 for v in temperatures):
        return f'`temperatures` is {temperatures!r}: give a non-empty list of temperatures in K, each > 0.'
    peak = parameters.get('peak_temperature')
    if peak is not None and not (_is_real(peak) and peak > max(temperatures)):
        return f'`peak_temperature` is {peak!r}: give a temperature in K above every one of `temperatures`.'
    if ensemble == 'npt':
        pressures = parameters.get('pressures')
        if not isinstance(pressures, list) or not pressures or not all(_is_real(v) for v in pressures):
            return f'`pressures` is {pressures!r}: the npt ensemble needs a non-empty list of pressures in bar.'

    nsteps = parameters.get('nsteps')
    if not _is_int(nsteps) or nsteps < 1:
        return f'`nsteps` is {nsteps!r}: give the number of MD steps per task, an integer > 0.'
    for key in ('sample_every', 'thermo_every'):
        value = parameters.get(key, 1)
        if not _is_int(value) or not 1 <= value <= nsteps:
            return f'`{key}` is {value!r}: give an integer between 1 and `nsteps` ({nsteps}).'
    seed = parameters.get('seed', 0)
    if not _is_int(seed) or seed < 0:
        return f'`seed` is {seed!r}: give an integer >= 0.'
    if not isinstance(parameters.get('isotropic', True), bool):
        return f'`isotropic` is {parameters["isotropic"]!r}: give true or false.'
    units = {'timestep': 'fs', 'friction': '1/fs', 'tdamp': 'fs', 'pdamp': 'fs', 'compressibility': '1/bar'}
    units |= {'min_distance': 'A', 'max_force': 'eV/A'}
    for key, unit in units.items():
        value = parameters.get(key)
        if value is None and key in ('min_distance', 'max_force'):
            continue
        if key in parameters and not (_is_real(value) and value > 0):
            return f'`{key}` is {value!r}: give a number > 0 (in {unit}).'
    return None


def resolve_parameters(parameters: dict) -> dict:
    """``parameters`` (valid) with every default filled in, as the script reads them."""
    resolved = {
        'ensemble': 'nvt',
        'timestep': 1.0,
        'seed': 0,
        'min_distance': None,
        'max_force': None,
        **parameters,
    }
    resolved.setdefault('sample_every', max(1, resolved['nsteps'] // 10))
    resolved.setdefault('thermo_every', resolved['sample_every'])
    if resolved['ensemble'] == 'nvt':
        resolved.setdefault('thermostat', 'langevin')
        if resolved['thermostat'] == 'langevin':
            resolved.setdefault('friction', 0.01)
        else:
            resolved.setdefault('tdamp', 100 * resolved['timestep'])
    else:
        resolved.setdefault('barostat', 'mtk')
        resolved.setdefault('isotropic', True)
        resolved.setdefault('tdamp', 100 * resolved['timestep'])
        resolved.setdefault('pdamp', 1000 * resolved['timestep'])
        if resolved['barostat'] == 'berendsen':
            resolved.setdefault('compressibility', 1e-6)
    return resolved


def validate_parameters(value: orm.Dict, _) -> str | None:
    """Port validator of ``parameters``."""
    problem = check_parameters(value.get_dict())
    return f'`parameters`: {problem}' if problem else None


def validate_inputs(inputs: dict, ctx) -> str | None:
    """Structures present, periodic for npt; a ``model_head`` that fits; all elements in the model's type map."""
    message = validate_calc_job(inputs, ctx)
    if message:
        return message
    if 'structures' in ctx and not inputs.get('structures'):
        return '`structures`: give at least one structure (a StructureData keyed by name).'
    structures = inputs.get('structures', {})
    model = inputs.get('model')
    if isinstance(model, ModelData):
        elements = {name: structure.get_symbols_set() for name, structure in structures.items()}
        problem = validate_model(model, inputs.get('model_head'), 'structures', elements)
        if problem:
            return problem
    parameters = inputs.get('parameters')
    if parameters is not None and parameters.get('ensemble') == 'npt':
        open_ = sorted(name for name, structure in structures.items() if not all(structure.pbc))
        if open_:
            return f'`structures`: npt needs periodic cells along all three axes; {open_} are not: use nvt for them.'
    return None


def frames_type_map(model: ModelData, structures: t.Mapping | None) -> list[str]:
    """Type map of the sampled frames: the model's, restricted to the elements of ``structures`` (model order).

    A universal model knows ~90 elements; carrying them all with every frame would also make them the type map of a
    DeePMD model trained on the frames (DeePMD requires every element a dataset names to be in the model's map).
    """
    if not structures:
        return list(model.type_map)
    present = {kind.symbol for structure in structures.values() for kind in structure.kinds}
    return [element for element in model.type_map if element in present]


class AseMdCalculation(ScriptCalculation):
    """Molecular dynamics with a model through ASE on one or more structures, sampling labelled frames.

    The parameter schema is in this module's docstring.
    """

    SCRIPT = 'md_ase'
    RETRIEVE: t.ClassVar[list[str]] = ['tasks.json', 'thermo', 'frames']

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['metadata']['options']['parser_name'].default = 'pfd.md.ase'
        define_model_inputs(spec, help='The model that drives the dynamics and labels the frames.')
        spec.input_namespace(
            'structures',
            valid_type=orm.StructureData,
            dynamic=True,
            help='The starting structures, keyed by name; each one starts a task per temperature (and pressure).',
        )
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            validator=validate_parameters,
            help='Ensemble, temperatures, pressures, time step, sampling and stability guard: see the module docs.',
        )
        spec.inputs.validator = validate_inputs

        spec.output('frames', valid_type=LabeledDataset, help='All sampled frames of all tasks, labelled by the model.')
        spec.output(
            'thermo',
            valid_type=orm.ArrayData,
            help='One array per task (`task_000`...) of rows (step, time_fs, temperature_K, pressure_bar, epot_eV, '
            'etot_eV, volume_A3); the column names are the attribute `columns`.',
        )
        spec.output('tasks', valid_type=orm.Dict, help='Per task: structure, temperature, pressure, frames, status.')

        spec.exit_code(320, 'ERROR_NO_FRAMES', invalidates_cache=True, message='No frame was sampled at all: {message}')
        spec.exit_code(
            400,
            'ERROR_UNSTABLE_TRAJECTORY',
            invalidates_cache=True,
            message='MD became unstable (the frames sampled before are attached): {message}',
        )

    def script_parameters(self) -> dict:
        parameters = resolve_parameters(self.inputs.parameters.get_dict())
        names = sorted(self.inputs.structures)
        pressures = parameters.get('pressures') or [None]
        tasks = [
            {'structure': name, 'temperature': temperature, 'pressure': pressure}
            for name in names
            for temperature in parameters['temperatures']
            for pressure in pressures
        ]
        return {
            'model': self.model_parameters(),
            'type_map': frames_type_map(self.inputs.model, self.inputs.structures),
            'structures': {name: structure_dict(self.inputs.structures[name]) for name in names},
            'tasks': [{'index': index, **task} for index, task in enumerate(tasks)],
            **parameters,
        }
