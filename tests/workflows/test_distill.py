"""``pfd.distill``: a tiny teacher distilled into a tiny student end to end (ASE MD, dp train, evaluations, timings)."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory, WorkflowFactory
from ase.build import bulk

from aiida_pfd.data import LabeledDataset, ModelData

DistillWorkChain = WorkflowFactory('pfd.distill')
EvaluateCalculation = CalculationFactory('pfd.evaluate')

TINY = {
    'exploration': {
        'stages': [[{'ensemble': 'nvt', 'temperatures': [300, 900], 'nsteps': 24, 'timestep': 2.0, 'sample_every': 2}]]
    },
    'n_frames': 20,
    'test_fraction': 0.25,
    'student': {
        'model': {
            'descriptor': {'rcut': 4.5, 'neuron': [4, 8], 'axis_neuron': 4},
            'fitting_net': {'neuron': [8, 8]},
        },
        'learning_rate': {'type': 'exp', 'start_lr': 0.003, 'stop_lr': 0.0003, 'decay_steps': 50},
        'training': {'numb_steps': 300, 'disp_freq': 50, 'save_freq': 300},
    },
    'speed': {'sizes': [4, 32], 'steps': 2, 'warmup': 1},
}


@pytest.fixture
def sevennet0(aiida_profile_clean):
    """SevenNet-0 as shipped: a teacher with real forces to learn."""
    return ModelData.from_shipped('sevennet-0').store()


@pytest.fixture
def builder(aiida_profile_clean, python_code, dp_code, sevennet0, emt_dataset):
    return DistillWorkChain.get_builder_from_protocol(
        codes={'python': python_code, 'dp': dp_code},
        teacher=sevennet0,
        structures={'cu': orm.StructureData(ase=bulk('Cu', 'fcc', a=3.6, cubic=True))},
        protocol='fast',
        overrides=TINY,
        reference_set=emt_dataset,
    )


@pytest.mark.slow
def test_student_is_trained_on_teacher_frames_and_compared(builder, sevennet0, emt_dataset):
    del builder['stability']  # tested on cheaper teachers below
    results, node = run_get_node(builder)

    assert node.is_finished_ok, node.exit_message
    student = results['model']
    assert isinstance(student, ModelData) and student.model_backend == 'deepmd' and student.kind == 'frozen'
    assert student.sha256 != sevennet0.sha256
    assert student.type_map == ['Cu']  # the explored elements, not the teacher's whole type map
    # The output student is the compressed one; the frozen one it was compressed from is kept.
    train = student.creator
    assert student.filename == 'frozen_model_compressed.pth' and train.outputs.compressed_model.pk == student.pk
    assert results['uncompressed_model'].pk == train.outputs.model.pk
    assert results['training_set'].n_frames == 15 and results['test_set'].n_frames == 5

    metrics = results['metrics'].get_dict()
    assert set(metrics) == {'student_vs_teacher', 'student_vs_dft', 'teacher_vs_dft', 'speed'}
    assert metrics['student_vs_teacher']['n_frames'] == 5
    assert metrics['student_vs_dft']['n_frames'] == metrics['teacher_vs_dft']['n_frames'] == emt_dataset.n_frames
    assert all(metrics[key]['force_rmse'] > 0 for key in ('student_vs_teacher', 'student_vs_dft', 'teacher_vs_dft'))
    # The student learned the teacher: on the held-out teacher frames its force error is well below the teacher's
    # force scale (what a student predicting zero forces would score); its energy error fell while it trained (300
    # steps of a tiny net are too few to bring it near the teacher's energies: DeePMD weights forces first).
    teacher_forces = np.concatenate([atoms.get_forces().ravel() for atoms in results['test_set'].to_ase()])
    assert metrics['student_vs_teacher']['force_rmse'] < 0.5 * np.sqrt(np.mean(teacher_forces**2))
    energy_curve = train.outputs.learning_curve.get_array('rmse_e_trn')
    assert energy_curve[-1] < energy_curve[0]
    speed = metrics['speed']
    assert speed['n_atoms'] == [4, 32] and speed['baseline'] == 'teacher'
    assert speed['speedup']['teacher'] == [1.0, 1.0]
    assert sorted(speed['models']) == ['student', 'student_uncompressed', 'teacher']
    assert all(value > 0 for value in speed['speedup']['student'] + speed['speedup']['student_uncompressed'])
    evaluation = next(link.node for link in node.base.links.get_outgoing(link_label_filter='student_vs_teacher').all())
    assert evaluation.inputs.model.pk == student.pk

    # Provenance: the student's training frames come from MD driven by the teacher, and from nothing else.
    query = orm.QueryBuilder()
    query.append(LabeledDataset, filters={'id': results['training_set'].pk}, tag='training')
    query.append(
        orm.CalcJobNode, with_descendants='training', tag='md', filters={'attributes.process_label': 'AseMdCalculation'}
    )
    query.append(ModelData, with_outgoing='md', project='id')
    assert set(query.all(flat=True)) == {sevennet0.pk}

    report = '\n'.join(log.message for log in orm.Log.collection.get_logs_for(node))
    assert 'training the se_atten_v2 student' in report and 'speed-up' in report
    assert 'blending the ZBL repulsion into the student' in report and 'pair_table' in train.inputs


TINY_DPA3_STUDENT = {
    'model': {
        'descriptor': {
            'type': 'dpa3',
            'repflow': {
                'n_dim': 8,
                'e_dim': 4,
                'a_dim': 4,
                'nlayers': 1,
                'e_rcut': 4.5,
                'e_rcut_smth': 4.0,
                'e_sel': 40,
                'a_rcut': 3.5,
                'a_rcut_smth': 3.0,
                'a_sel': 16,
                'axis_neuron': 4,
            },
            'seed': 1,
        },
        'fitting_net': {'neuron': [8], 'seed': 1},
    },
    'learning_rate': {'type': 'exp', 'start_lr': 0.001, 'stop_lr': 0.0001, 'decay_steps': 10},
    'loss': {'type': 'ener', 'start_pref_e': 0.02, 'limit_pref_e': 1, 'start_pref_f': 1000, 'limit_pref_f': 1},
    'training': {'numb_steps': 10, 'disp_freq': 5, 'save_freq': 10, 'seed': 1, 'training_data': {'batch_size': 1}},
}


#: The student's MD test, short: 32 Cu atoms, 0.3 ps NVT and 0.1 ps NVE per temperature.
SHORT_STABILITY = {
    'min_atoms': 32,
    'nvt_time': 0.3,
    'nve_time': 0.1,
    'timestep': 2.0,
    'thermo_every': 5,
    'equilibration': 0.1,
    'temperature_tolerance': 0.6,
}


def test_an_uncompressible_student_is_used_uncompressed_and_its_collapse_is_named(builder, tiny_model):
    """DeePMD cannot compress DPA-3: the training job exits 304 with its frozen model, and the distillation goes on;
    the student (10 steps of training, no ZBL) then collapses in the MD test: exit 404, its model still attached."""
    builder.teacher = tiny_model  # a cheap teacher: the compression fallback and the stability verdict are tested
    builder.student = orm.Dict(TINY_DPA3_STUDENT)
    builder.reference_set = None
    builder.stability = orm.Dict(SHORT_STABILITY)
    del builder['speed']
    del builder['zbl']

    results, node = run_get_node(builder)

    assert node.exit_status == DistillWorkChain.exit_codes.ERROR_STUDENT_UNSTABLE.status, node.exit_message
    train = results['model'].creator
    assert train.exit_status == 304 and 'Compression is unsupported for DPA3' in train.exit_message
    assert results['model'].pk == train.outputs.model.pk and 'uncompressed_model' not in results
    assert set(results['metrics'].get_dict()) == {'student_vs_teacher'}
    stability = results['stability'].get_dict()
    # the temperatures of the test: the highest explored (900 K) and 1.2 x above it
    assert [run['temperature'] for run in stability['runs']] == [900.0, 1080.0]
    assert not stability['passed'] and not all(run['checks']['min_distance'] for run in stability['runs'])
    assert stability['runs'][0]['n_atoms'] == 32
    report = '\n'.join(log.message for log in orm.Log.collection.get_logs_for(node))
    assert 'compression failed, going on with the uncompressed student' in report
    assert 'stability 900 K, 32 atoms' in report and 'FAILED' in report


def test_wider_exploration_a_round_and_a_zbl_student_that_holds_in_md(builder, python_code, tiny_model):
    """Task groups explore a supercell with a vacancy, strained, and a heat-quench; the default student (compact
    se_atten_v2) gets the ZBL pair table; one round of iterative distillation adds the student's own frames where it
    disagrees most with the teacher; the final student passes the MD test, where the teacher itself collapses."""
    builder.teacher = tiny_model
    builder.reference_set = None
    builder.exploration = orm.Dict(
        {
            'stages': [
                [
                    {
                        'temperatures': [300],
                        'nsteps': 12,
                        'sample_every': 3,
                        'supercell': [2, 1, 1],
                        'defects': ['vacancy'],
                        'strains': [-0.03, 0.03],
                    },
                    {'temperatures': [300], 'nsteps': 12, 'sample_every': 3, 'peak_temperature': 1200},
                ]
            ]
        }
    )
    builder.stability = orm.Dict({**SHORT_STABILITY, 'temperatures': [600.0]})
    builder.rounds = orm.Dict({'max_rounds': 1, 'frames': 4, 'candidates': 10})
    del builder['speed']

    results, node = run_get_node(builder)

    assert node.is_finished_ok, node.exit_message
    [entry] = results['rounds']['rounds']
    assert entry['round'] == 1 and entry['candidates'] == 10 and entry['added'] == 4
    assert entry['training_frames'] == 9 and results['training_set'].n_frames == 13  # 12 explored, 3 held out
    disagreement = node.base.links.get_outgoing(link_label_filter='round_01_disagreement').one().node
    errors = disagreement.outputs.errors.get_array('max_force_error')
    assert entry['largest_disagreement'] == pytest.approx(errors.max())
    worst = sorted(int(i) for i in np.argsort(errors)[::-1][:4])
    retrained = node.base.links.get_outgoing(link_label_filter='train_student_r1').one().node
    assert results['model'].creator.pk == retrained.pk
    # The retrained student learned the frames it was worst on: its error on them fell.
    from aiida_pfd.data.operations import subset_dataset

    added = subset_dataset(disagreement.inputs.reference, orm.List(worst))
    _, after = run_get_node(EvaluateCalculation, code=python_code, model=results['model'], reference=added)
    assert after.outputs.errors.get_array('max_force_error').mean() < errors[worst].mean()
    calls = node.base.links.get_outgoing(link_type=LinkType.CALL_CALC).all()
    explored = sorted(
        name for link in calls if link.link_label.startswith('explore_') for name in link.node.inputs.structures
    )
    assert explored == ['cu', 'cu_x211_vacancy_strain_m3p0', 'cu_x211_vacancy_strain_p3p0']
    vacancy = next(md for md in node.called if 'cu_x211_vacancy_strain_m3p0' in getattr(md.inputs, 'structures', {}))
    assert len(vacancy.inputs.structures['cu_x211_vacancy_strain_m3p0'].sites) == 7
    train = results['model'].creator
    assert 'pair_table' in train.inputs
    assert train.inputs.parameters['model']['sw_rmax'] == pytest.approx(0.75 * 2 * 1.32, abs=0.01)
    run = results['stability']['runs'][0]
    assert run['passed'] and run['min_distance_ratio'] > SHORT_STABILITY.get('min_distance_fraction', 0.6)


@pytest.mark.parametrize(
    ('port', 'value', 'message'),
    [
        ('test_fraction', lambda: orm.Float(1.0), 'test_fraction'),
        ('n_frames', lambda: orm.Int(1), 'n_frames'),
        ('student', lambda: orm.Dict({'training': {'numb_steps': 5}}), 'model.descriptor'),
        ('structures', lambda: {'nacl': orm.StructureData(ase=bulk('NaCl', 'rocksalt', a=5.6))}, 'lacks'),
        ('teacher_head', lambda: orm.Str('EMT_Cu'), 'not a head'),
        (
            'exploration',
            lambda: orm.Dict({'stages': [[{'temperatures': [300], 'nsteps': 4, 'supercell': [2, 2]}]]}),
            'task group 0: `supercell` is \\[2, 2\\]',
        ),
        ('zbl', lambda: orm.Dict({'sw_rmin': 2.0, 'sw_rmax': 1.0}), '`sw_rmin` < `sw_rmax`'),
        ('stability', lambda: orm.Dict({'nvt_time': 0.5}), 'stability: `equilibration` 1.0 ps'),
    ],
)
def test_inputs_are_validated(builder, tiny_model, port, value, message):
    builder.teacher = tiny_model  # Cu and Si only: NaCl is refused before anything runs
    with pytest.raises(ValueError, match=message):
        builder[port] = value()
        run_get_node(builder)


def test_dp_code_is_required(builder):
    builder.codes = {'python': builder.codes['python']}
    with pytest.raises(ValueError, match=r'codes\.dp'):
        run_get_node(builder)


def test_student_templates():
    from aiida_pfd.workflows.distill import distill_preset

    preset = distill_preset('balanced', student='se_atten_v2')
    assert preset['student']['model']['descriptor']['type'] == 'se_atten_v2'
    assert preset['student']['model']['descriptor']['sel'] == 'auto'
    assert preset['zbl'] == {} and preset['stability']['min_atoms'] == 512
    default = distill_preset('fast')
    descriptor = default['student']['model']['descriptor']
    assert descriptor['type'] == 'se_atten_v2' and descriptor['attn_layer'] == 0 and descriptor['sel'] == 'auto'
    assert 'zbl' in default
    assert 'zbl' not in distill_preset('fast', student='se_e2_a')  # no type embedding: DeePMD cannot blend ZBL in
    with pytest.raises(ValueError, match='unknown student'):
        distill_preset('fast', student='dpa3')
