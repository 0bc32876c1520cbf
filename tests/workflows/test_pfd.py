"""``pfd.pfd``: the fine-tuning loop end to end with real pw.x, dp and ASE MD, and its input validation."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory, WorkflowFactory
from aiida_quantumespresso.calculations.pw import PwCalculation
from ase.build import bulk

from aiida_pfd.backends.deepmd import DeepmdBackend
from aiida_pfd.data import LabeledDataset, ModelData
from aiida_pfd.ledger import TRAINED_ROLES, frames_with_role
from aiida_pfd.testing.workflows import TINY_DFT, TINY_DISTILL, tiny_overrides, tiny_si_builder
from aiida_pfd.workflows.labelling.quantumespresso import QuantumEspressoAdaptor

EvaluateCalculation = CalculationFactory('pfd.evaluate')
PFDWorkChain = WorkflowFactory('pfd.pfd')


@pytest.fixture
def builder(aiida_profile_clean, pw_code, python_code, dp_code, pseudo_family, multitask_checkpoint):
    codes = {'pw': pw_code, 'python': python_code, 'dp': dp_code}
    return tiny_si_builder(codes, multitask_checkpoint, distill=TINY_DISTILL)


def pw_calculations_behind(node) -> set[int]:
    query = orm.QueryBuilder()
    query.append(orm.Node, filters={'id': node.pk}, tag='target')
    query.append(PwCalculation, with_descendants='target', project='id')
    return set(query.all(flat=True))


def frames_merged_into(dataset) -> set[int]:
    """The one-frame datasets a merged dataset was made of."""
    incoming = dataset.creator.base.links.get_incoming(node_class=LabeledDataset).all_nodes()
    return {frame.pk for frame in incoming}


@pytest.mark.slow
@pytest.mark.needs_pw
def test_loop_runs_two_iterations_survives_failures_and_keeps_provenance(builder, monkeypatch):
    """Failures injected for real: an SCF that does not converge (iteration 1), a pw.x crash (iteration 2), a first
    fine-tuning whose loss diverges (restarted once at a lower learning rate) and an MD task group that blows up in
    every iteration; the loop goes on and records each in ``history.failures``."""
    original = QuantumEspressoAdaptor.get_inputs.__func__

    def two_frames_fail(cls, caller, structure, label):
        inputs = original(cls, caller, structure, label)
        parameters = inputs.pw.parameters.get_dict()
        if label == 'dft_01_0000':  # first frame of iteration 1: one SCF step, no restart
            parameters['ELECTRONS']['electron_maxstep'] = 1
            inputs.max_iterations = orm.Int(1)
        if label == 'dft_02_0000':  # first frame of iteration 2: pw.x aborts (too few bands for 8 electrons)
            parameters['SYSTEM']['nbnd'] = 2
            inputs.max_iterations = orm.Int(1)
        inputs.pw.parameters = orm.Dict(parameters)
        return inputs

    monkeypatch.setattr(QuantumEspressoAdaptor, 'get_inputs', classmethod(two_frames_fail))

    original_finetune_inputs = DeepmdBackend.finetune_inputs

    fine_tunings = []

    def first_training_diverges(self, *, training_set, parameters, **kwargs):
        fine_tunings.append(training_set.n_frames)
        if len(fine_tunings) == 1:  # the first fine-tuning, on the 2 initial frames trained on
            parameters = {**parameters, 'learning_rate': {'start_lr': 1e6, 'stop_lr': 1e5}}
        return original_finetune_inputs(self, training_set=training_set, parameters=parameters, **kwargs)

    monkeypatch.setattr(DeepmdBackend, 'finetune_inputs', first_training_diverges)
    builder.training = orm.Dict({**builder.training.get_dict(), 'divergence_learning_rate_factor': 1e-8})
    exploration = builder.exploration.get_dict()
    blow_up = {'ensemble': 'nvt', 'temperatures': [100000], 'nsteps': 20, 'timestep': 2.0, 'min_distance': 2.0}
    exploration['stages'][0].append(blow_up)
    builder.exploration = orm.Dict(exploration)

    results, node = run_get_node(builder)

    assert node.exit_status == PFDWorkChain.exit_codes.ERROR_NOT_CONVERGED.status, node.exit_message
    history = results['history'].get_dict()
    iterations = history['iterations']
    assert [entry['iteration'] for entry in iterations] == [1, 2]
    assert iterations[0]['dft_failed'] == 1 and iterations[0]['dft_labelled'] == 3
    assert iterations[1]['dft_failed'] == 1
    failures = [(entry['iteration'], entry['step'], entry['action']) for entry in history['failures']]
    assert failures[0] == (0, 'training', 'restarted')
    assert [(it, step) for it, step, _ in failures if step == 'dft'] == [(1, 'dft'), (2, 'dft')]
    assert [it for it, step, _ in failures if step == 'exploration'] == [1, 2]
    crash = next(entry for entry in history['failures'] if entry['step'] == 'dft' and entry['iteration'] == 2)
    assert crash['process'].startswith('PwBaseWorkChain<') and crash['exit_status'] != 0
    assert all(not entry['converged'] for entry in iterations)
    assert iterations[0]['decision'].startswith('not converged, adding')
    assert iterations[-1]['decision'].startswith('not converged after the last iteration: fine-tuning once more')
    assert all('force_rmse' in entry['reason'] and entry['force_rmse'] > 0 for entry in iterations)
    # One held-out frame per batch (3 initial, 2 and 3 fresh), never judged: convergence used the others.
    assert history['initial'] == {
        'dft_labelled': 3,
        'dft_failed': 0,
        'held_out': 1,
        'trained_on': 2,
        'held_out_seed': history['initial']['held_out_seed'],
    }
    assert [(entry['frames_held_out'], entry['frames_judged']) for entry in iterations] == [(1, 1), (1, 1)]
    # Every seed derives from the one `seed` input and is recorded.
    assert history['seeds']['seed'] == 0 and set(history['seeds']['perturbation']) == {'si'}
    trained_after = ['0', '1'] + (['2'] if iterations[-1]['frames_added'] else [])  # the initial set and iterations
    assert sorted(history['seeds']['training']) == trained_after
    assert all(set(entry['seeds']) == {'md', 'selection', 'held_out'} for entry in iterations)
    assert len({entry['seeds']['selection'] for entry in iterations}) == 2

    training_set, model, test_set = results['training_set'], results['model'], results['test_set']
    assert isinstance(model, ModelData) and model.kind == 'frozen'
    # The last iteration's in-band frames are trained on too: its DFT frames are not wasted.
    assert iterations[-1]['frames_not_trained'] == 0
    assert iterations[-1]['frames_added'] + iterations[-1]['frames_accurate'] == 1
    added = [entry['frames_added'] for entry in iterations]

    # The ledger holds every DFT frame with its role; the training and test sets are exactly its roles' frames.
    ledger = results['dft_frames']
    roles = ledger.base.attributes.get('frame_roles')
    assert ledger.n_frames == len(roles) == 3 + 2 + 2
    assert ledger.base.attributes.get('frame_iterations') == [0] * 3 + [1] * 2 + [2] * 2
    assert len(frames_with_role(ledger, *TRAINED_ROLES)) == training_set.n_frames == 2 + sum(added)
    assert len(frames_with_role(ledger, 'held_out')) == test_set.n_frames == 3

    # init_from previous: each fine-tuning starts from the one before's checkpoint, on the new frames plus half of the
    # old ones.
    trainings = sorted(
        (child for child in node.called if child.process_label == 'DeepmdTrainWorkChain'), key=lambda n: n.ctime
    )
    assert added[0] > 0 and len(trainings) == 1 + sum(1 for count in added if count)
    assert trainings[1].inputs.train.finetune_from.pk == trainings[0].outputs.checkpoint.pk
    assert trainings[1].inputs.train.training_set.n_frames == 1 + added[0]
    assert trainings[-1].outputs.model.pk == model.pk
    # The diverged first fine-tuning: a NaN loss (exit 400), then the same job at 1e-8 times the learning rate.
    diverged, restarted = sorted(trainings[0].called, key=lambda n: n.ctime)
    assert diverged.exit_status == 400 and restarted.is_finished_ok
    assert restarted.inputs.parameters['learning_rate']['start_lr'] == pytest.approx(1e-2)
    assert [len(training.called) for training in trainings[1:]] == [1] * (len(trainings) - 1)

    # Provenance: the DFT runs behind the model are exactly those whose frames it was trained on; the ledger leads to
    # every successful DFT run; no frame of the test set is one the model was trained on.
    behind_model = pw_calculations_behind(model)
    assert behind_model == pw_calculations_behind(training_set) and len(behind_model) == training_set.n_frames
    successful = orm.QueryBuilder().append(PwCalculation, filters={'attributes.exit_status': 0}, project='id')
    assert pw_calculations_behind(ledger) == set(successful.all(flat=True))
    merged_from = {name: frames_merged_into(results[name]) for name in ('training_set', 'test_set')}
    assert len(merged_from['test_set']) == 3 and not merged_from['test_set'] & merged_from['training_set']
    assert frames_merged_into(ledger) >= merged_from['test_set'] | merged_from['training_set']

    report = '\n'.join(log.message for log in orm.Log.collection.get_logs_for(node))
    assert 'iteration 1: exploring' in report and 'frame skipped' in report

    # Scored on the same held-out frames: the final model, the foundation zero-shot and the distilled model.
    assert results['metrics']['n_frames'] == test_set.n_frames
    assert results['foundation_metrics']['zero_shot']['n_frames'] == test_set.n_frames
    distillation = next(child for child in node.called if child.process_label == 'DistillWorkChain')
    assert distillation.is_finished_ok, distillation.exit_message
    assert distillation.inputs.teacher.pk == model.pk
    assert distillation.inputs.seed.value == history['seeds']['distill']
    student = results['distill']['model']
    assert student.kind == 'frozen' and student.pk == distillation.outputs.model.pk
    assert results['distill']['uncompressed_model'].pk == student.creator.outputs.model.pk  # the student is compressed
    metrics = results['distill']['metrics'].get_dict()
    assert metrics['speed']['n_atoms'] == [2, 16]
    assert distillation.inputs.reference_set.pk == test_set.pk
    assert metrics['student_vs_dft']['n_frames'] == test_set.n_frames


def test_distill_exploration_names_the_pfd_structures(builder):
    """The distillation's task groups may name the PFD run's structures (it passes them on), and only those."""
    group = {'temperatures': [300], 'nsteps': 5}
    builder.distill.exploration = orm.Dict({'stages': [[{**group, 'structures': ['si']}]]})
    assert PFDWorkChain.spec().inputs.validate(builder._inputs(prune=True)) is None
    builder.distill.exploration = orm.Dict({'stages': [[{**group, 'structures': ['ge']}]]})
    with pytest.raises(ValueError, match=r"distill\.exploration: task group names unknown structures \['ge'\]"):
        run_get_node(builder)


def test_replay_needs_an_aligned_foundation(builder):
    replay = {'exploration': {'stages': [[{'temperatures': [900], 'nsteps': 4}]]}}
    builder.replay = orm.Dict(replay)
    with pytest.raises(ValueError, match='replay: the replay frames carry the foundation'):
        run_get_node(builder)  # a DeePMD foundation: its fine-tuning refits the energy zero, the replay would not
    with pytest.raises(ValueError, match=r'replay\.ratio'):
        builder.replay = orm.Dict({**replay, 'ratio': 0})
    # a multi-task checkpoint's branches have their own energy zeros: it cannot be aligned, so no replay either
    builder.replay = orm.Dict(replay)
    builder.training = orm.Dict({**builder.training.get_dict(), 'align_energy': True})
    with pytest.raises(ValueError, match=r'training\.align_energy: a multi-task DeePMD-kit checkpoint'):
        run_get_node(builder)


def test_a_single_task_deepmd_foundation_can_be_aligned_for_replay(builder, tiny_checkpoint):
    builder.foundation_model = tiny_checkpoint
    del builder['model_branch']
    builder.replay = orm.Dict({'exploration': {'stages': [[{'temperatures': [900], 'nsteps': 4}]]}})
    with pytest.raises(ValueError, match='replay: the replay frames carry the foundation'):
        run_get_node(builder)
    builder.training = orm.Dict({**builder.training.get_dict(), 'align_energy': True})
    assert PFDWorkChain.spec().inputs.validate(builder._inputs(prune=True)) is None


def test_foundation_must_cover_the_elements_and_have_the_branch(builder):
    builder.structures = {'nacl': orm.StructureData(ase=bulk('NaCl', 'rocksalt', a=5.6))}
    with pytest.raises(ValueError, match=r"lacks \['Cl', 'Na'\]"):
        run_get_node(builder)
    builder.structures = {'al': orm.StructureData(ase=bulk('Al', 'fcc', a=4.05))}  # the builder's pseudos: Si only
    with pytest.raises(ValueError, match=r"dft.pw.pseudos: no pseudopotential for the kinds \['Al'\].*structure `al`"):
        run_get_node(builder)
    builder.structures = {'si': orm.StructureData(ase=bulk('Si', 'diamond', a=5.43))}
    builder.model_branch = orm.Str('MP_traj')
    with pytest.raises(ValueError, match='`MP_traj` is not a branch'):
        run_get_node(builder)


@pytest.fixture
def sevennet_builder(aiida_profile_clean, pw_code, python_code, pseudo_family):
    """SevenNet-0 fine-tuned on 2-atom Si cells: three frames trained on, two held out; one iteration that converges
    (loose target) and finds every judged frame accurate (band above any error)."""
    overrides = {
        'perturbation': {'frames': 5, 'atom_displacement': 0.15},
        'test_fraction': 0.3,  # 2 of the 5 initial frames, 1 of the 3 fresh ones
        'exploration': {
            'stages': [[{'ensemble': 'nvt', 'temperatures': [600], 'nsteps': 20, 'timestep': 2.0, 'sample_every': 5}]]
        },
        'selection': {'max_frames': 3, 'min_distance': 1.2, 'diversity': 'random', 'error_band': [20.0, 50.0]},
        'training': {'parameters': {'sevenn': {'train': {'epoch': 30, 'optim_param': {'lr': 0.001}}}}},
        'convergence': {'force_rmse': 5.0, 'energy_rmse': 1.0, 'max_iterations': 2},
    }
    builder = PFDWorkChain.get_builder_from_protocol(
        codes={'pw': pw_code, 'python': python_code},
        structures={'si': orm.StructureData(ase=bulk('Si', 'diamond', a=5.43))},
        foundation_model=ModelData.from_shipped('sevennet-0').store(),
        protocol='fast',
        overrides=overrides,
        dft_overrides=TINY_DFT,
    )
    # replay: strained cells at 900 K, labelled by the aligned foundation, one per DFT frame trained on
    builder.replay = orm.Dict(
        {
            'exploration': {
                'stages': [
                    [
                        {
                            'temperatures': [900],
                            'nsteps': 12,
                            'timestep': 2.0,
                            'sample_every': 3,
                            'strains': [-0.03, 0.03],
                        }
                    ]
                ]
            },
            'ratio': 1.0,
        }
    )
    return builder


@pytest.mark.slow
@pytest.mark.needs_pw
def test_sevennet_finetuning_beats_the_foundation_on_held_out_frames_and_converges(sevennet_builder):
    results, node = run_get_node(sevennet_builder)

    assert node.is_finished_ok, node.exit_message
    [entry] = results['history']['iterations']
    assert entry['converged'] and entry['decision'] == 'converged'
    assert (entry['frames_judged'], entry['frames_accurate'], entry['frames_held_out']) == (2, 2, 1)
    ledger = results['dft_frames']
    assert ledger.base.attributes.get('role_counts') == {'initial': 3, 'held_out': 3, 'accurate': 2}
    assert results['test_set'].n_frames == 3 and results['training_set'].n_frames == 3  # DFT frames only

    # The foundation's energy zero was aligned onto pw.x's before fine-tuning: same forces, far closer energies.
    training = next(child for child in node.called if child.process_label == 'SevennTrainWorkChain').called[0]
    assert training.inputs.finetune_from.pk == results['aligned_foundation'].pk
    # Replay: the aligned foundation's own frames of strained cells (2 cells x 4 frames), 3 of them mixed into the
    # fine-tuning beside the 3 DFT frames; none of them in the DFT ledger or the test set.
    replay = results['replay_set']
    assert replay.n_frames == 8 and training.inputs.training_set.n_frames == 6
    replay_md = node.base.links.get_outgoing(link_label_filter='replay_000').one().node
    assert replay_md.inputs.model.pk == results['aligned_foundation'].pk
    foundation = results['foundation_metrics'].get_dict()
    assert foundation['aligned']['force_rmse'] == pytest.approx(foundation['zero_shot']['force_rmse'], rel=1e-4)
    assert foundation['aligned']['energy_rmse_per_atom'] < 0.1 * foundation['zero_shot']['energy_rmse_per_atom']

    # Fine-tuning learned: on the held-out frames the fine-tuned model beats the foundation, forces and energies.
    finetuned = results['metrics'].get_dict()
    assert finetuned['n_frames'] == foundation['zero_shot']['n_frames'] == 3
    assert finetuned['force_rmse'] < 0.8 * foundation['zero_shot']['force_rmse']
    assert finetuned['energy_rmse_per_atom'] < foundation['aligned']['energy_rmse_per_atom']


@pytest.fixture
def unphysical_builder(aiida_profile_clean, pw_code, python_code, dp_code, pseudo_family, multitask_checkpoint):
    """The DeePMD loop for one iteration with an error band below any error: every judged frame is unphysical."""
    codes = {'pw': pw_code, 'python': python_code, 'dp': dp_code}
    return tiny_si_builder(codes, multitask_checkpoint, tiny_overrides(max_iterations=1, error_band=(0.0, 1e-6)))


@pytest.mark.slow
@pytest.mark.needs_pw
def test_unphysical_frames_and_a_failed_final_evaluation_keep_the_ledger(unphysical_builder, monkeypatch):
    original = PFDWorkChain._submit_evaluation

    def final_evaluation_fails(self, reference, label, model=None, head=None):
        if label == 'evaluate_final':  # the job's script exits before the evaluation runs
            options = {**self._options('evaluate'), 'prepend_text': 'exit 3'}
            inputs = {'code': self.inputs.codes['python'], 'model': self.ctx.model, 'reference': reference}
            inputs['metadata'] = {'call_link_label': label, 'options': options}
            return self.submit(EvaluateCalculation, **inputs)
        return original(self, reference, label, model=model, head=head)

    monkeypatch.setattr(PFDWorkChain, '_submit_evaluation', final_evaluation_fails)

    results, node = run_get_node(unphysical_builder)

    assert node.exit_status == PFDWorkChain.exit_codes.ERROR_FINAL_EVALUATION_FAILED.status, node.exit_message
    assert 'EvaluateCalculation' in node.exit_message
    [entry] = results['history']['iterations']
    assert (entry['frames_unphysical'], entry['frames_held_out'], entry['frames_added']) == (2, 1, 0)
    ledger = results['dft_frames']
    assert ledger.base.attributes.get('role_counts') == {'initial': 2, 'held_out': 2, 'unphysical': 2}
    assert ledger.base.attributes.get('frame_iterations') == [0, 0, 0, 1, 1, 1]
    assert results['test_set'].n_frames == 2 and results['training_set'].n_frames == 2
    assert 'model' in results and 'metrics' not in results
