"""``pfd.md.ase``: real ASE molecular dynamics driven by the tiny DeePMD model on 4-atom fcc Cu cells."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_pfd.calculations.md_ase import AseMdCalculation

#: One thread per operator pool: the model is tiny, threads only add overhead.
THREADS = {'OMP_NUM_THREADS': '1', 'DP_INTRA_OP_PARALLELISM_THREADS': '1', 'DP_INTER_OP_PARALLELISM_THREADS': '1'}


def cu(a: float = 3.6) -> orm.StructureData:
    return orm.StructureData(ase=bulk('Cu', 'fcc', a=a, cubic=True))


def md_builder(code, model, structures: dict, **parameters):
    builder = AseMdCalculation.get_builder()
    builder.code = code
    builder.model = model
    builder.structures = structures
    builder.parameters = orm.Dict(parameters)
    builder.metadata.options.environment_variables = THREADS
    return builder


def coordinates(node) -> np.ndarray:
    return np.concatenate([system['coords'] for system in node.outputs.frames.to_dpdata()])


def test_nvt_langevin_samples_frames_labelled_by_the_model(aiida_profile_clean, python_code, tiny_model):
    parameters = dict(temperatures=[300.0, 600.0], nsteps=20, sample_every=5, thermo_every=2, timestep=2.0)
    builder = md_builder(python_code, tiny_model, {'strained': cu(3.7), 'cu': cu()}, **parameters)

    _, node = run_get_node(builder)

    assert node.is_finished_ok, node.exit_message
    tasks = node.outputs.tasks['tasks']
    # Tasks: structures by name, then temperatures; every stable task samples steps 5, 10, 15, 20.
    assert [(task['structure'], task['temperature']) for task in tasks] == [
        ('cu', 300.0),
        ('cu', 600.0),
        ('strained', 300.0),
        ('strained', 600.0),
    ]
    assert {task['status'] for task in tasks} == {'ok'}
    assert [task['n_frames'] for task in tasks] == [4] * 4

    frames = node.outputs.frames
    assert frames.n_frames == 16 == node.outputs.tasks['n_frames']
    assert frames.is_labelled and frames.has_virial
    assert frames.type_map == ['Cu']  # the model's map (Cu, Si) restricted to the elements explored

    thermo = node.outputs.thermo
    assert thermo.get_arraynames() == ['task_000', 'task_001', 'task_002', 'task_003']
    assert thermo.base.attributes.get('columns')[:3] == ['step', 'time_fs', 'temperature_K']
    for name, task in zip(thermo.get_arraynames(), tasks):
        rows = thermo.get_array(name)
        assert rows.shape == (11, 7)
        np.testing.assert_array_equal(rows[:, 0], np.arange(0, 21, 2))
        np.testing.assert_allclose(rows[:, 1], rows[:, 0] * 2.0)
        assert rows[0, 2] == pytest.approx(task['temperature'])  # velocities rescaled to the exact temperature
        assert (rows[:, 2] > 0).all()
        np.testing.assert_allclose(rows[:, 6], rows[0, 6])  # nvt: constant volume

    # The labels are the model's own: evaluate it again on the first frame.
    first = frames.to_ase()[0]
    reference = first.copy()
    reference.calc = tiny_model.get_calculator()
    assert first.get_potential_energy() == pytest.approx(reference.get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(first.get_forces(), reference.get_forces(), atol=1e-6)


def test_nvt_nose_hoover_chain(aiida_profile_clean, python_code, tiny_model):
    parameters = dict(ensemble='nvt', thermostat='nose_hoover_chain', temperatures=[500], nsteps=30, tdamp=50.0)
    _, node = run_get_node(md_builder(python_code, tiny_model, {'cu': cu()}, **parameters))

    assert node.is_finished_ok, node.exit_message
    # Defaults: sample_every = nsteps // 10 = 3, thermo_every = sample_every, so 10 frames and 11 thermo rows.
    assert node.outputs.frames.n_frames == 10
    rows = node.outputs.thermo.get_array('task_000')
    assert rows.shape == (11, 7)
    assert (rows[:, 2] > 0).all()
    # Nose-Hoover chains conserve an extended energy: the physical total energy drifts little over 30 fs.
    assert np.ptp(rows[:, 5]) < 0.05


@pytest.mark.parametrize(('barostat', 'isotropic'), [('mtk', True), ('berendsen', True), ('mtk', False)])
def test_npt_compresses_more_at_higher_pressure(aiida_profile_clean, python_code, tiny_model, barostat, isotropic):
    parameters = dict(
        ensemble='npt',
        barostat=barostat,
        isotropic=isotropic,
        temperatures=[300.0],
        pressures=[1.0, 10000.0],
        nsteps=20,
        sample_every=10,
        thermo_every=5,
        timestep=2.0,
        pdamp=50.0,
    )
    if barostat == 'berendsen':
        parameters['compressibility'] = 1e-5
    _, node = run_get_node(md_builder(python_code, tiny_model, {'cu': cu()}, **parameters))

    assert node.is_finished_ok, node.exit_message
    tasks = node.outputs.tasks['tasks']
    assert [(task['pressure'], task['ensemble']) for task in tasks] == [(1.0, 'npt'), (10000.0, 'npt')]
    assert node.outputs.frames.n_frames == 2 * 2
    assert node.outputs.frames.has_virial
    low, high = (node.outputs.thermo.get_array(name) for name in ('task_000', 'task_001'))
    assert low.shape == high.shape == (5, 7)
    assert (low[:, 2] > 0).all() and (high[:, 2] > 0).all()
    assert low[0, 6] == high[0, 6] == pytest.approx(3.6**3)
    assert high[-1, 6] < low[-1, 6]  # the cell follows the applied pressure
    boxes = [system['cells'] for system in node.outputs.frames.to_dpdata()]
    assert not np.allclose(boxes[0], boxes[1])


def test_seeded_runs_reproduce_their_frames(aiida_profile_clean, python_code, tiny_model):
    # Two tasks with the same structure and temperature get different streams: [seed, 0] and [seed, 1].
    parameters = dict(temperatures=[800.0, 800.0], nsteps=10, sample_every=5, seed=7, timestep=2.0)

    _, first = run_get_node(md_builder(python_code, tiny_model, {'cu': cu()}, **parameters))
    _, second = run_get_node(md_builder(python_code, tiny_model, {'cu': cu()}, **parameters))

    assert first.is_finished_ok and second.is_finished_ok
    np.testing.assert_array_equal(coordinates(first), coordinates(second))
    np.testing.assert_array_equal(
        first.outputs.thermo.get_array('task_001'), second.outputs.thermo.get_array('task_001')
    )
    coords = coordinates(first)
    assert not np.allclose(coords[:2], coords[2:])


def test_unstable_task_keeps_its_frames_and_the_others_run(aiida_profile_clean, python_code, tiny_model):
    # Nearest neighbours: 3.25 A (a=4.6), 2.55 A (a=3.6), 2.40 A (a=3.4). With a 2.45 A bound the a=3.4 cell fails
    # its very first check, the a=3.6 cell fails once thermal motion at 1000 K brings two atoms 0.1 A closer (the
    # tiny model barely pushes back), the a=4.6 cell stays clear over the 40 fs.
    structures = {'loose': cu(4.6), 'tight': cu(3.6), 'squeezed': cu(3.4)}
    parameters = dict(temperatures=[1000.0], nsteps=20, sample_every=1, timestep=2.0, min_distance=2.45)

    _, node = run_get_node(md_builder(python_code, tiny_model, structures, **parameters))

    assert node.exit_status == AseMdCalculation.exit_codes.ERROR_UNSTABLE_TRAJECTORY.status
    tasks = {task['structure']: task for task in node.outputs.tasks['tasks']}
    assert tasks['loose']['status'] == 'ok' and tasks['loose']['n_frames'] == 20
    assert tasks['squeezed']['status'] == 'unstable'
    assert (tasks['squeezed']['unstable_step'], tasks['squeezed']['n_frames']) == (0, 0)
    tight = tasks['tight']
    assert tight['status'] == 'unstable' and 1 < tight['unstable_step'] < 20
    assert tight['n_frames'] == tight['unstable_step'] - 1
    assert 'closer than 2.4500 A' in tight['message']
    for task in (tight, tasks['squeezed']):
        assert f'{task["name"]} ({task["structure"]}, 1000.0 K) unstable at step {task["unstable_step"]}' in (
            node.exit_message
        )
    assert 'loose' not in node.exit_message

    # The frames of the stable task and those before the blow-up are attached; thermo stops before the blow-up.
    assert node.outputs.frames.n_frames == 20 + tight['n_frames']
    thermo = node.outputs.thermo
    assert thermo.get_array(f'task_{tight["index"]:03d}')[:, 0].tolist() == list(range(tight['unstable_step']))
    assert thermo.get_array(f'task_{tasks["squeezed"]["index"]:03d}').shape == (0, 7)


def test_heat_quench_follows_the_temperature_ramp(aiida_profile_clean, python_code, tiny_model):
    parameters = dict(
        temperatures=[100.0],
        peak_temperature=3000.0,
        nsteps=60,
        sample_every=30,
        thermo_every=1,
        timestep=1.0,
        friction=0.5,
        min_distance=0.2,
    )
    _, node = run_get_node(md_builder(python_code, tiny_model, {'cu': cu()}, **parameters))

    assert node.exit_status in (0, 400), node.exit_message
    rows = node.outputs.thermo.get_array('task_000')
    temperature = {int(step): value for step, value in zip(rows[:, 0], rows[:, 2])}
    start = np.mean([temperature[s] for s in range(1, 7) if s in temperature])
    peak = np.mean([temperature[s] for s in range(24, 37) if s in temperature])
    assert peak > 5 * start  # the thermostat's target went from 100 K up to 3000 K and held there mid-run


@pytest.mark.parametrize(
    ('parameters', 'message'),
    [
        ({'ensemble': 'nve'}, "`ensemble` is 'nve': choose one of"),
        ({'temperatures': []}, '`temperatures` is'),
        (
            {'temperatures': [300, -5]},
            '`temperatures` is \\[300, -5\\]: give a non-empty list of temperatures in K, each > 0',
        ),
        ({'ensemble': 'npt'}, '`pressures` is None: the npt ensemble needs'),
        ({'pressures': [1.0]}, "`pressures` applies only with `ensemble` 'npt'"),
        ({'ensemble': 'npt', 'pressures': [1.0], 'thermostat': 'langevin'}, '`thermostat` applies only with'),
        ({'ensemble': 'npt', 'pressures': [1.0], 'barostat': 'parrinello'}, "`barostat` is 'parrinello'"),
        ({'ensemble': 'npt', 'pressures': [1.0], 'compressibility': 1e-6}, '`compressibility` applies only with'),
        ({'thermostat': 'nose_hoover_chain', 'friction': 0.01}, "`friction` applies only with `thermostat` 'langevin'"),
        ({'tdamp': 100.0}, '`tdamp` applies only with'),
        ({'thermostat': 'andersen'}, "`thermostat` is 'andersen'"),
        ({'timestep': -1.0}, '`timestep` is -1.0: give a number > 0 \\(in fs\\)'),
        ({'nsteps': 0}, '`nsteps` is 0'),
        ({'nsteps': 10.0}, '`nsteps` is 10.0'),
        ({'sample_every': 20}, '`sample_every` is 20: give an integer between 1 and `nsteps` \\(10\\)'),
        ({'thermo_every': 0}, '`thermo_every` is 0'),
        ({'seed': -1}, '`seed` is -1'),
        ({'min_distance': 0.0}, '`min_distance` is 0.0'),
        ({'temperature': 300}, "unknown keys \\['temperature'\\]"),
        ({'peak_temperature': 200}, '`peak_temperature` is 200: give a temperature in K above every one'),
        ({'thermostat': 'nose_hoover_chain', 'peak_temperature': 900}, '`peak_temperature` applies only with'),
    ],
)
def test_bad_parameters_are_rejected(aiida_profile_clean, python_code, tiny_model, parameters, message):
    parameters = {'temperatures': [300.0], 'nsteps': 10, **parameters}
    with pytest.raises(ValueError, match=f'`parameters`: {message}'):
        run_get_node(md_builder(python_code, tiny_model, {'cu': cu()}, **parameters))


def test_structures_must_be_covered_by_the_model(aiida_profile_clean, python_code, tiny_model):
    alloy = bulk('Si', 'diamond', a=5.43)
    alloy.symbols[1] = 'Al'
    structures = {'cu': cu(), 'alloy': orm.StructureData(ase=alloy)}
    message = r'lacks the elements Al \(in alloy\) present in `structures`: use a model that covers'
    with pytest.raises(ValueError, match=message) as info:
        run_get_node(md_builder(python_code, tiny_model, structures, temperatures=[300.0], nsteps=10))
    assert 'Si (' not in str(info.value)


def test_other_input_checks(aiida_profile_clean, python_code, tiny_model):
    parameters = {'temperatures': [300.0], 'nsteps': 10}
    with pytest.raises(ValueError, match='`structures`: give at least one structure'):
        run_get_node(md_builder(python_code, tiny_model, {}, **parameters))

    cluster = bulk('Cu', 'fcc', a=3.6, cubic=True)
    cluster.pbc = False
    molecule = orm.StructureData(ase=cluster)
    npt = {**parameters, 'ensemble': 'npt', 'pressures': [1.0]}
    with pytest.raises(ValueError, match=r"npt needs periodic cells along all three axes; \['molecule'\]"):
        run_get_node(md_builder(python_code, tiny_model, {'molecule': molecule}, **npt))

    builder = md_builder(python_code, tiny_model, {'cu': cu()}, **parameters)
    builder.model_head = orm.Str('Cu')
    with pytest.raises(ValueError, match='`model_head` is `Cu` but `model` has no heads'):
        run_get_node(builder)
