"""``pfd.pfd``: the fine-tuning loop end to end with real pw.x, dp and ASE MD, and its input validation."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory
from aiida_quantumespresso.calculations.pw import PwCalculation
from ase.build import bulk

from aiida_pfd.data import LabeledDataset, ModelData
from aiida_pfd.workflows.labelling.quantumespresso import QuantumEspressoAdaptor

PFDWorkChain = WorkflowFactory('pfd.pfd')

TINY_DFT = {'pw': {'parameters': {'SYSTEM': {'ecutwfc': 14.0, 'ecutrho': 112.0}}}, 'kpoints_distance': 0.6}


def tiny_overrides(max_iterations=2):
    return {
        'perturbation': {'frames': 2},
        'exploration': {
            'stages': [[{'ensemble': 'nvt', 'temperatures': [600], 'nsteps': 20, 'timestep': 2.0, 'sample_every': 5}]]
        },
        'selection': {'max_frames': 2, 'min_distance': 1.2, 'error_band': [0.0, 50.0]},
        'training': {
            'parameters': {'deepmd': {'training': {'numb_steps': 10, 'disp_freq': 5, 'save_freq': 10}}},
        },
        # Unreachable on purpose: the loop must run all iterations and end with ERROR_NOT_CONVERGED, outputs kept.
        'convergence': {'force_rmse': 1e-6, 'energy_rmse': 1e-9, 'max_iterations': max_iterations},
    }


TINY_DISTILL = {
    'protocol': 'fast',
    'overrides': {
        'exploration': {
            'stages': [[{'ensemble': 'nvt', 'temperatures': [600], 'nsteps': 16, 'timestep': 2.0, 'sample_every': 2}]]
        },
        'n_frames': 8,
        'test_fraction': 0.25,
        'student': {
            'model': {'descriptor': {'rcut': 4.0, 'neuron': [4, 8], 'axis_neuron': 4}, 'fitting_net': {'neuron': [8]}},
            'training': {'numb_steps': 10, 'disp_freq': 5, 'save_freq': 10},
        },
        'speed': {'sizes': [2, 16], 'steps': 1, 'warmup': 1},
    },
}


@pytest.fixture
def builder(aiida_profile_clean, pw_code, python_code, dp_code, pseudo_family, multitask_checkpoint):
    structure = orm.StructureData(ase=bulk('Si', 'diamond', a=5.43))
    return PFDWorkChain.get_builder_from_protocol(
        codes={'pw': pw_code, 'python': python_code, 'dp': dp_code},
        structures={'si': structure},
        foundation_model=multitask_checkpoint,
        protocol='fast',
        overrides=tiny_overrides(),
        model_branch='EMT_Cu',
        dft_overrides=TINY_DFT,
        distill=TINY_DISTILL,
    )


@pytest.mark.needs_pw
def test_loop_runs_two_iterations_survives_a_dft_failure_and_keeps_provenance(builder, monkeypatch):
    original = QuantumEspressoAdaptor.get_inputs.__func__

    def one_frame_fails(cls, caller, structure, label):
        inputs = original(cls, caller, structure, label)
        if label == 'dft_1_0':  # first frame of iteration 1: one SCF step, no restart
            parameters = inputs.pw.parameters.get_dict()
            parameters['ELECTRONS']['electron_maxstep'] = 1
            inputs.pw.parameters = orm.Dict(parameters)
            inputs.max_iterations = orm.Int(1)
        return inputs

    monkeypatch.setattr(QuantumEspressoAdaptor, 'get_inputs', classmethod(one_frame_fails))

    results, node = run_get_node(builder)

    assert node.exit_status == PFDWorkChain.exit_codes.ERROR_NOT_CONVERGED.status, node.exit_message
    history = results['history']['iterations']
    assert [entry['iteration'] for entry in history] == [1, 2]
    assert history[0]['dft_failed'] == 1 and history[0]['dft_labelled'] == 2
    assert history[1]['dft_failed'] == 0
    assert all(not entry['converged'] for entry in history)
    assert history[0]['decision'].startswith('not converged, adding')
    assert history[-1]['decision'].startswith('not converged after the last iteration')
    assert all('force_rmse' in entry['reason'] for entry in history)
    assert all(entry['force_rmse'] > 0 for entry in history)

    training_set, model = results['training_set'], results['model']
    assert isinstance(model, ModelData) and model.kind == 'frozen'
    total = {key: sum(entry[key] for entry in history) for key in history[0] if key.startswith('frames_')}
    assert training_set.n_frames == 2 + total['frames_added']
    assert history[-1]['frames_added'] == 0  # the last iteration trains no more: its frames test the final model
    assert results['test_set'].n_frames == total['frames_accurate'] + total['frames_held_out'] > 0
    labelled = sum(entry['dft_labelled'] - entry['dft_failed'] for entry in history)
    assert sum(total.values()) == labelled

    # Provenance: the DFT runs behind the model are exactly those whose frames are in its training set.
    query = orm.QueryBuilder()
    query.append(ModelData, filters={'id': model.pk}, tag='model')
    query.append(PwCalculation, with_descendants='model', project='id')
    behind_model = set(query.all(flat=True))
    query = orm.QueryBuilder()
    query.append(LabeledDataset, filters={'id': training_set.pk}, tag='training')
    query.append(PwCalculation, with_descendants='training', project='id')
    assert behind_model == set(query.all(flat=True))
    assert len(behind_model) == training_set.n_frames
    all_pw = orm.QueryBuilder().append(PwCalculation, project='id').all(flat=True)
    assert len(all_pw) > len(behind_model)  # some DFT frames were never trained on, and are not behind the model

    report = '\n'.join(log.message for log in orm.Log.collection.get_logs_for(node))
    assert 'iteration 1: exploring' in report and 'frame skipped' in report

    # P→F→D: the fine-tuned model was distilled, with the DFT test set as the reference.
    distillation = next(child for child in node.called if child.process_label == 'DistillWorkChain')
    assert distillation.is_finished_ok, distillation.exit_message
    assert distillation.inputs.teacher.pk == model.pk
    student = results['distill']['model']
    assert student.kind == 'frozen' and student.pk == distillation.outputs.model.pk
    assert results['distill']['uncompressed_model'].pk == student.creator.outputs.model.pk  # the student is compressed
    metrics = results['distill']['metrics'].get_dict()
    assert metrics['speed']['n_atoms'] == [2, 16]
    assert distillation.inputs.reference_set.pk == results['test_set'].pk
    assert metrics['student_vs_dft']['n_frames'] == results['test_set'].n_frames


@pytest.mark.parametrize(
    ('change', 'message'),
    [
        ({'selection': {'error_band': [1.0, 0.5]}}, 'selection.error_band'),
        ({'training': {'init_from': 'scratch'}}, 'training.init_from'),
        ({'convergence': {'max_iterations': 0}}, 'convergence.max_iterations'),
        ({'exploration': {'stages': []}}, 'exploration: give `stages`'),
        ({'exploration': {'stages': [[{'temperatures': [300], 'nsteps': 5, 'structures': ['ge']}]]}}, 'unknown'),
    ],
)
def test_inputs_are_validated(builder, change, message):
    with pytest.raises(ValueError, match=message):  # raised on assignment (port validator) or on launch
        for port, value in change.items():
            current = builder[port].get_dict()
            current.update(value)
            builder[port] = orm.Dict(current)
        run_get_node(builder)


def test_foundation_must_cover_the_elements_and_have_the_branch(builder):
    builder.structures = {'nacl': orm.StructureData(ase=bulk('NaCl', 'rocksalt', a=5.6))}
    with pytest.raises(ValueError, match=r"lacks \['Cl', 'Na'\]"):
        run_get_node(builder)
    builder.structures = {'si': orm.StructureData(ase=bulk('Si', 'diamond', a=5.43))}
    builder.model_branch = orm.Str('MP_traj')
    with pytest.raises(ValueError, match='`MP_traj` is not a branch'):
        run_get_node(builder)
