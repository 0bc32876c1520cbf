"""Bad input is refused before anything runs, with a message that names the port: the cases of
``docs/reference/bad-input.md``, one table row per case (its first column is the case id)."""

from __future__ import annotations

import dataclasses
import pathlib
import re
import typing as t

import pytest
from aiida import orm
from aiida.plugins import WorkflowFactory
from ase.build import bulk

from aiida_pfd.data import ModelData
from aiida_pfd.testing.workflows import TINY_DFT, TINY_DISTILL, tiny_overrides

PFDWorkChain = WorkflowFactory('pfd.pfd')

TABLE = pathlib.Path(__file__).resolve().parents[2] / 'docs' / 'reference' / 'bad-input.md'

GROUP = tiny_overrides()['exploration']['stages'][0][0]
OVERRIDES = tiny_overrides()


@pytest.fixture
def builder(aiida_profile, pw_code, python_code, dp_code, pseudo_family, multitask_checkpoint):
    """A valid PFDWorkChain builder: Si, the tiny multi-task foundation (Al, Cu, Si), pseudos for Si only, distill.

    The profile is not cleaned between the cases: nothing is stored but the codes, family and foundation.
    """
    return PFDWorkChain.get_builder_from_protocol(
        codes={'pw': pw_code, 'python': python_code, 'dp': dp_code},
        structures={'si': orm.StructureData(ase=bulk('Si', 'diamond', a=5.43))},
        foundation_model=multitask_checkpoint,
        protocol='fast',
        overrides=OVERRIDES,
        model_branch='EMT_Cu',
        dft_overrides=TINY_DFT,
        distill=TINY_DISTILL,
    )


@dataclasses.dataclass(frozen=True)
class Case:
    """A bad input: ``change(builder, tmp_path)`` makes it; ``message`` is a literal substring of the refusal."""

    id: str
    change: t.Callable
    message: str


def update(port: str, **values) -> t.Callable:
    """Merge ``values`` into the Dict input ``port`` (a dotted path: ``distill.speed``)."""

    def change(builder, _):
        *parents, name = port.split('.')
        namespace = builder
        for parent in parents:
            namespace = namespace[parent]
        current = namespace[name].get_dict() if name in namespace else {}
        namespace[name] = orm.Dict({**current, **values})

    return change


def set_input(port: str, make: t.Callable) -> t.Callable:
    """Set the input ``port`` (a dotted path) to ``make()``."""

    def change(builder, _):
        *parents, name = port.split('.')
        namespace = builder
        for parent in parents:
            namespace = namespace[parent]
        namespace[name] = make()

    return change


def task_group(port: str = 'exploration', index: int = 0, **values) -> t.Callable:
    """Make task group ``index`` (of two in one stage) of ``port`` the valid one updated with ``values``."""
    groups = [dict(GROUP), dict(GROUP)]
    groups[index].update(values)
    groups[index] = {key: value for key, value in groups[index].items() if value is not None}
    if port == 'replay':
        return set_input('replay', lambda: orm.Dict({'exploration': {'stages': [groups]}}))
    return set_input(port, lambda: orm.Dict({'stages': [groups]}))


def structures(**atoms) -> t.Callable:
    return set_input('structures', lambda: {name: orm.StructureData(ase=value) for name, value in atoms.items()})


def no_sites(builder, _):
    builder.structures = {
        'si': builder.structures['si'],
        'void': orm.StructureData(cell=[[3, 0, 0], [0, 3, 0], [0, 0, 3]]),
    }


def not_a_model(builder, tmp_path):
    path = tmp_path / 'notes.txt'
    path.write_text('not a model\n')
    builder.foundation_model = ModelData(path)


def missing_model(builder, tmp_path):
    builder.foundation_model = ModelData(tmp_path / 'missing.pt')


def unknown_backend(builder, tmp_path):
    builder.foundation_model = ModelData(tmp_path / 'missing.pt', model_backend='mace')


def family_lacks_element(builder, _):
    """The builder made from the protocol for Al: the PFD/Debian/PBE family has no PBE pseudopotential for Al."""
    PFDWorkChain.get_builder_from_protocol(
        codes={'pw': builder.dft.pw.code, **builder.codes},
        structures={'al': orm.StructureData(ase=bulk('Al', 'fcc', a=4.05))},
        foundation_model=builder.foundation_model,
        protocol='fast',
        overrides=OVERRIDES,
        model_branch='EMT_Cu',
        dft_overrides=TINY_DFT,
    )


REPLAY = {'exploration': {'stages': [[GROUP]]}}

CASES = [
    # structures
    Case('structures-empty', set_input('structures', dict), 'structures: give at least one structure'),
    Case('structure-without-sites', no_sites, "structures: ['void'] have no sites"),
    # foundation model
    Case(
        'elements-not-in-type-map', structures(nacl=bulk('NaCl', 'rocksalt', a=5.6)), "its type map lacks ['Cl', 'Na']"
    ),
    Case(
        'branch-not-in-foundation', set_input('model_branch', lambda: orm.Str('MP_traj')), '`MP_traj` is not a branch'
    ),
    Case('model-file-not-a-model', not_a_model, '`notes.txt` is not a DeePMD-kit PyTorch model'),
    Case('model-file-missing', missing_model, 'is not a file: give the path of a deepmd model file'),
    Case('model-backend-unknown', unknown_backend, 'unknown model backend `mace`'),
    # DFT
    Case(
        'pseudo-family-lacks-element',
        family_lacks_element,
        'pseudo_family: family `PFD/Debian/PBE` does not contain pseudo for element `Al`',
    ),
    Case(
        'pseudos-lack-element',
        structures(al=bulk('Al', 'fcc', a=4.05)),
        "dft.pw.pseudos: no pseudopotential for the kinds ['Al']",
    ),
    # seed and test_fraction
    Case('seed-negative', set_input('seed', lambda: orm.Int(-1)), 'seed: give a non-negative integer'),
    Case('test-fraction-one', set_input('test_fraction', lambda: orm.Float(1.0)), 'test_fraction: give the held-out'),
    # perturbation
    Case(
        'perturbation-unknown-key',
        update('perturbation', frame=3),
        'perturbation: unknown key `frame`; did you mean `frames`?',
    ),
    Case('perturbation-seed', update('perturbation', seed=1), 'perturbation.seed: every seed derives'),
    Case('perturbation-frames-zero', update('perturbation', frames=0), 'perturbation.frames: give at least 1 frame'),
    Case('initial-frames-too-few', update('perturbation', frames=1), 'perturbation.frames: give at least 2 initial'),
    # exploration
    Case(
        'exploration-no-stages',
        set_input('exploration', lambda: orm.Dict({'stages': []})),
        'exploration: give `stages`',
    ),
    Case(
        'exploration-unknown-top-key',
        set_input('exploration', lambda: orm.Dict({'stages': [[GROUP]], 'stage': []})),
        'exploration: unknown key `stage`; did you mean `stages`?',
    ),
    Case(
        'task-group-unknown-key',
        task_group(temperature=[300]),
        'exploration: task group 0: unknown key `temperature`; did you mean `temperatures`?',
    ),
    Case(
        'task-group-missing-nsteps',
        task_group(nsteps=None),
        'exploration: task group 0: give at least `temperatures` and `nsteps`',
    ),
    Case(
        'task-group-negative-temperature',
        task_group(temperatures=[300, -300]),
        'exploration: task group 0: `temperatures` is [300, -300]',
    ),
    Case(
        'task-group-zero-temperature', task_group(temperatures=[0]), 'exploration: task group 0: `temperatures` is [0]'
    ),
    Case('task-group-negative-nsteps', task_group(nsteps=-10), 'exploration: task group 0: `nsteps` is -10'),
    Case('task-group-zero-nsteps', task_group(nsteps=0), 'exploration: task group 0: `nsteps` is 0'),
    Case('task-group-zero-timestep', task_group(timestep=0), 'exploration: task group 0: `timestep` is 0'),
    Case('task-group-negative-timestep', task_group(index=1, timestep=-1.0), 'exploration: task group 1: `timestep`'),
    Case(
        'task-group-sample-every-above-nsteps',
        task_group(sample_every=50),
        'exploration: task group 0: `sample_every` is 50',
    ),
    Case(
        'task-group-misplaced-key',
        task_group(pressures=[1.0]),
        "exploration: task group 0: `pressures` applies only with `ensemble` 'npt'",
    ),
    Case('task-group-unknown-ensemble', task_group(ensemble='nve'), "exploration: task group 0: `ensemble` is 'nve'"),
    Case(
        'task-group-unknown-structure',
        task_group(structures=['ge']),
        "exploration: task group names unknown structures ['ge']",
    ),
    Case('task-group-unknown-defect', task_group(defects=['antisite']), "`defects` is ['antisite']"),
    Case('task-group-bad-supercell', task_group(supercell=[2, 2]), 'task group 0: `supercell` is [2, 2]'),
    Case('task-group-large-strain', task_group(strains=[0.6]), 'task group 0: `strains` is [0.6]'),
    # selection
    Case(
        'selection-unknown-key',
        update('selection', max_frame=3),
        'selection: unknown key `max_frame`; did you mean `max_frames`?',
    ),
    Case('selection-seed', update('selection', seed=1), 'selection.seed: every seed derives'),
    Case('selection-unknown-diversity', update('selection', diversity='fps'), 'selection.diversity: choose one of'),
    Case(
        'error-band-lower-above-upper',
        update('selection', error_band=[1.0, 0.5]),
        'selection.error_band: give [lower, upper] in eV/Å with 0 <= lower < upper',
    ),
    Case(
        'error-band-negative', update('selection', error_band=[-0.1, 1.0]), 'selection.error_band: give [lower, upper]'
    ),
    Case(
        'selection-max-frames-zero', update('selection', max_frames=0), 'selection.max_frames: give a positive number'
    ),
    # training
    Case(
        'training-unknown-key',
        update('training', init_form='previous'),
        'training: unknown key `init_form`; did you mean `init_from`?',
    ),
    Case('training-init-from-unknown', update('training', init_from='scratch'), 'training.init_from: choose one of'),
    Case('training-old-data-fraction', update('training', old_data_fraction=1.5), 'training.old_data_fraction'),
    Case('training-align-energy-not-bool', update('training', align_energy='yes'), 'training.align_energy: give true'),
    Case(
        'training-divergence-factor',
        update('training', divergence_learning_rate_factor=2.0),
        'training.divergence_learning_rate_factor: give the factor',
    ),
    Case(
        'training-align-energy-multitask',
        update('training', align_energy=True),
        'training.align_energy: a multi-task DeePMD-kit checkpoint',
    ),
    # convergence
    Case(
        'convergence-unknown-key',
        update('convergence', force_rms=0.1),
        'convergence: unknown key `force_rms`; did you mean `force_rmse`?',
    ),
    Case('convergence-force-rmse-negative', update('convergence', force_rmse=-0.1), 'convergence.force_rmse: give'),
    Case('convergence-energy-rmse-zero', update('convergence', energy_rmse=0.0), 'convergence.energy_rmse: give'),
    Case('convergence-max-iterations-zero', update('convergence', max_iterations=0), 'convergence.max_iterations'),
    # replay
    Case(
        'replay-unknown-key',
        set_input('replay', lambda: orm.Dict({**REPLAY, 'ratios': 2.0})),
        'replay: unknown key `ratios`; did you mean `ratio`?',
    ),
    Case('replay-ratio-zero', set_input('replay', lambda: orm.Dict({**REPLAY, 'ratio': 0})), 'replay.ratio: give'),
    Case(
        'replay-negative-temperature',
        task_group('replay', temperatures=[-5]),
        'replay.exploration: task group 0: `temperatures` is [-5]',
    ),
    Case('replay-foundation-not-aligned', set_input('replay', lambda: orm.Dict(REPLAY)), 'replay: the replay frames'),
    # options
    Case(
        'options-not-per-job-kind',
        set_input('options', lambda: orm.Dict({'environment_variables': {'OMP_NUM_THREADS': '1'}})),
        'options: unknown key `environment_variables`',
    ),
    # distill (the exposed DistillWorkChain inputs)
    Case(
        'distill-task-group-negative-nsteps',
        task_group('distill.exploration', nsteps=-1),
        'exploration: task group 0: `nsteps` is -1',
    ),
    Case(
        'distill-unknown-structure',
        task_group('distill.exploration', structures=['ge']),
        "distill.exploration: task group names unknown structures ['ge']",
    ),
    Case(
        'distill-speed-unknown-key',
        update('distill.speed', size=[2]),
        'speed: unknown key `size`; did you mean `sizes`?',
    ),
    Case(
        'distill-rounds-unknown-key',
        update('distill.rounds', max_round=2),
        'rounds: unknown key `max_round`; did you mean `max_rounds`?',
    ),
    Case(
        'distill-zbl-unknown-key',
        update('distill.zbl', sw_rmn=1.0),
        'zbl: unknown key `sw_rmn`; did you mean `sw_rmin`?',
    ),
    Case(
        'distill-options-unknown-kind',
        update('distill.options', evaluation={}),
        'options: unknown key `evaluation`; did you mean `evaluate`?',
    ),
]


@pytest.mark.parametrize('case', CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused(builder, tmp_path, case):
    """Each bad input is refused on assignment (port validator) or by the validation of all the inputs, which is what
    a launch runs first: nothing is submitted."""
    assert PFDWorkChain.spec().inputs.validate(builder._inputs(prune=True)) is None
    with pytest.raises(ValueError, match=re.escape(case.message)):
        case.change(builder, tmp_path)
        error = PFDWorkChain.spec().inputs.validate(builder._inputs(prune=True))
        if error is not None:
            raise ValueError(str(error))


def table_rows() -> dict[str, str]:
    """The table of ``docs/reference/bad-input.md``: ``{case id: message}``."""
    rows = {}
    for line in TABLE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip('|').split(' | ')]
        if not line.startswith('| `') or len(cells) != 4:
            continue
        case_id = cells[0].strip('`')
        assert case_id not in rows, f'{case_id} has two rows'
        rows[case_id] = cells[3]
    return rows


def test_the_docs_table_has_one_row_per_case():
    rows = table_rows()
    assert len({case.id for case in CASES}) == len(CASES)
    assert sorted(rows) == sorted(case.id for case in CASES)
    for case in CASES:
        assert rows[case.id] == case.message.replace('|', '\\|'), case.id
