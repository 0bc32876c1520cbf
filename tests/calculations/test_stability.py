"""``pfd.stability``: real MD of DeePMD models; a model that collapses fails, ZBL blended in keeps atoms apart."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory
from ase.build import bulk

from aiida_pfd.calculations.stability import DEFAULTS, check_parameters
from aiida_pfd.data import LabeledDataset
from aiida_pfd.scripts.stability import assess, repetitions
from aiida_pfd.testing.models import emt_frames, tiny_se_e2_a_input
from aiida_pfd.zbl import zbl_energy, zbl_pair_table

StabilityCalculation = CalculationFactory('pfd.stability')
DeepmdTrainCalculation = CalculationFactory('pfd.deepmd.train')
THREADS = {'OMP_NUM_THREADS': '1', 'DP_INTRA_OP_PARALLELISM_THREADS': '1', 'DP_INTER_OP_PARALLELISM_THREADS': '1'}
#: 32 Cu atoms at 600 K for 0.3 ps, then 0.1 ps NVE; loose temperature bound for so few atoms.
SHORT = {
    'temperatures': [600.0],
    'min_atoms': 32,
    'nvt_time': 0.3,
    'nve_time': 0.1,
    'timestep': 2.0,
    'thermo_every': 5,
    'equilibration': 0.1,
    'temperature_tolerance': 0.6,
}


def table(rows):
    """A thermo table (step, time_ps, T, epot, etot, dmin, ratio, nve) from (time, T, etot, ratio, nve) rows."""
    return np.array([[i, t, temp, 0.0, e, 2.0 * r, r, nve] for i, (t, temp, e, r, nve) in enumerate(rows)], float)


def test_assess_names_each_failed_check():
    parameters = {**DEFAULTS, 'nvt_time': 1.0, 'equilibration': 0.2}
    steady = [(t, 1000.0, -5.0, 0.9, 0) for t in np.linspace(0, 1, 11)] + [
        (1 + t, 1000.0, -5.0 + 1e-4 * t, 0.9, 1) for t in np.linspace(0.1, 1, 10)
    ]
    run = assess(0, 1000.0, 1, table(steady), None, parameters)
    assert run['passed'] and run['energy_drift'] == pytest.approx(0.1)

    collapsing = [(t, 1000.0 if t < 0.5 else 1600.0, -5.0, 0.9 if t < 0.5 else 0.3, 0) for t in np.linspace(0, 1, 11)]
    drifting = [(1 + t, 1000.0, -5.0 + 0.01 * t, 0.9, 1) for t in np.linspace(0.1, 1, 10)]
    run = assess(0, 1000.0, 1, table(collapsing + drifting), None, parameters)
    assert run['checks'] == {'finite': True, 'min_distance': False, 'temperature': False, 'energy_drift': False}
    assert '0.30 x their covalent-radius sum' in run['message'] and '60.0%' in run['message']
    assert 'NVE energy drift 10 meV/atom/ps' in run['message']


def test_repetitions_reach_the_atom_count_as_evenly_as_the_cell_allows():
    assert repetitions(bulk('Si', 'diamond', a=5.43, cubic=True), 512) == [4, 4, 4]
    assert repetitions(bulk('Si', 'diamond', a=5.43, cubic=True), 4096) == [8, 8, 8]
    slab = bulk('Cu', 'fcc', a=3.6, cubic=True).repeat((2, 1, 1))
    assert repetitions(slab, 32) == [1, 2, 2] and repetitions(slab, 100) == [2, 3, 3]


@pytest.mark.parametrize(
    ('parameters', 'fragment'),
    [
        ({}, '`temperatures`'),
        ({'temperatures': [300], 'nvt_time': 0}, '`nvt_time`'),
        ({'temperatures': [300], 'nvt_time': 0.5}, '`equilibration` 1.0 ps'),
        ({'temperatures': [300], 'min_distance_fraction': 1.5}, '`min_distance_fraction`'),
        ({'temperatures': [300], 'steps': 10}, "unknown keys ['steps']"),
    ],
)
def test_bad_parameters_are_named(parameters, fragment):
    assert fragment in check_parameters(parameters)


def test_zbl_is_the_screened_coulomb_repulsion():
    r = np.array([0.001, 1.0, 2.0])
    energy = zbl_energy(14, 14, r)
    assert energy[0] == pytest.approx(14.399645 * 196 / 0.001, rel=0.02)  # bare Coulomb at contact
    assert np.all(np.diff(energy) < 0) and energy[1] == pytest.approx(50.97, rel=1e-3)


def stability_builder(code, model, **parameters):
    builder = StabilityCalculation.get_builder()
    builder.code = code
    builder.model = model
    builder.structure = orm.StructureData(ase=bulk('Cu', 'fcc', a=3.6, cubic=True))
    builder.parameters = orm.Dict({**SHORT, **parameters})
    builder.metadata.options.environment_variables = THREADS
    return builder


def test_a_collapsing_model_fails_with_its_results_attached(aiida_profile_clean, python_code, tiny_model):
    _, node = run_get_node(stability_builder(python_code, tiny_model))

    assert node.exit_status == StabilityCalculation.exit_codes.ERROR_MODEL_UNSTABLE.status
    results = node.outputs.results.get_dict()
    run = results['runs'][0]
    assert results['n_atoms'] == 32 and results['supercell'] == [2, 2, 2] and not results['passed']
    assert not run['checks']['min_distance'] and run['min_distance_ratio'] < 0.6
    assert 'covalent-radius sum' in node.exit_message
    thermo = node.outputs.thermo
    assert thermo.get_arraynames() == ['run_000']
    assert thermo.get_array('run_000')[-1, 1] == pytest.approx(0.4)  # NVT and NVE both ran to the end


def train(code, frames, zbl: bool):
    parameters = tiny_se_e2_a_input(['Cu', 'Si'], systems=[], numb_steps=20)
    del parameters['training']['training_data']
    parameters['model']['descriptor'] = {
        'type': 'se_atten_v2',
        'rcut': 4.5,
        'rcut_smth': 0.5,
        'sel': 40,
        'neuron': [4, 8],
        'axis_neuron': 4,
        'attn': 8,
        'attn_layer': 0,
        'seed': 1,
    }
    builder = DeepmdTrainCalculation.get_builder()
    builder.code = code
    builder.training_set = frames
    if zbl:
        parameters['model'].update({'sw_rmin': 1.6, 'sw_rmax': 2.2})
        builder.pair_table = zbl_pair_table(orm.List(['Cu', 'Si']), orm.Float(4.5))
    builder.parameters = orm.Dict(parameters)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    return results['model']


def test_zbl_blended_in_keeps_the_same_network_from_collapsing(aiida_profile_clean, dp_code, python_code):
    frames = LabeledDataset.from_ase(emt_frames('Cu', 12), type_map=['Cu', 'Si']).store()
    plain, blended = train(dp_code, frames, zbl=False), train(dp_code, frames, zbl=True)

    _, collapsed = run_get_node(stability_builder(python_code, plain))
    _, held = run_get_node(stability_builder(python_code, blended))

    assert not collapsed.outputs.results['runs'][0]['checks']['min_distance']
    assert held.is_finished_ok, held.exit_message
    run = held.outputs.results['runs'][0]
    assert run['passed'] and run['min_distance_ratio'] > 0.6
    assert abs(run['energy_drift']) < DEFAULTS['max_energy_drift']


def test_pair_table_needs_the_blending_range(aiida_profile_clean, dp_code):
    builder = DeepmdTrainCalculation.get_builder()
    builder.code = dp_code
    builder.training_set = LabeledDataset.from_ase(emt_frames('Cu', 2), type_map=['Cu', 'Si'])
    builder.parameters = orm.Dict(tiny_se_e2_a_input(['Cu', 'Si'], systems=[]))
    builder.pair_table = zbl_pair_table(orm.List(['Cu', 'Si']), orm.Float(4.5))
    with pytest.raises(ValueError, match=r'set `model\.sw_rmin`'):
        run_get_node(builder)
