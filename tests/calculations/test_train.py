"""``pfd.deepmd.train``: real ``dp --pt train`` / ``--finetune`` / ``freeze`` runs on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory
from ase.build import bulk

from aiida_pfd.data import LabeledDataset
from aiida_pfd.testing.models import emt_frames, tiny_se_e2_a_input

DeepmdTrainCalculation = CalculationFactory('pfd.deepmd.train')


def scratch_parameters(numb_steps=20):
    parameters = tiny_se_e2_a_input(['Cu', 'Si'], systems=[], numb_steps=numb_steps)
    del parameters['training']['training_data']
    parameters['training']['disp_freq'] = 10
    return parameters


def test_train_from_scratch_with_validation_and_compression(aiida_profile_clean, dp_code):
    training = LabeledDataset.from_ase(emt_frames('Cu', 10, seed=1), type_map=['Cu', 'Si']).store()
    validation = LabeledDataset.from_ase(emt_frames('Cu', 3, seed=2), type_map=['Cu', 'Si']).store()
    builder = DeepmdTrainCalculation.get_builder()
    builder.code = dp_code
    builder.training_set = training
    builder.validation_set = validation
    builder.parameters = orm.Dict(scratch_parameters(numb_steps=50))
    builder.settings = orm.Dict({'compress': {'step': 0.01}})

    results, node = run_get_node(builder)

    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert results['model'].kind == 'frozen' and results['checkpoint'].kind == 'checkpoint'
    assert results['compressed_model'].kind == 'frozen' and results['compressed_model'].type_map == ['Cu', 'Si']
    assert results['compressed_model'].sha256 != results['model'].sha256
    assert results['model'].type_map == ['Cu', 'Si']
    curve = results['learning_curve']
    assert curve.get_array('step')[-1] == 50
    assert {'rmse_e_trn', 'rmse_f_trn', 'rmse_e_val', 'rmse_f_val'} <= set(curve.base.attributes.get('columns'))
    metrics = results['metrics'].get_dict()
    assert metrics['step'] == 50 and np.isfinite(metrics['rmse_f_val'])

    # The compressed model tabulates the embedding nets: the same energies and forces to the table's accuracy.
    atoms = bulk('Cu', 'fcc', a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=1)
    predictions = []
    for port in ('model', 'compressed_model'):
        atoms.calc = results[port].get_calculator()
        predictions.append((atoms.get_potential_energy(), atoms.get_forces()))
    assert np.isfinite(predictions[0][0])
    assert abs(predictions[0][0] - predictions[1][0]) / len(atoms) < 1e-4
    assert np.abs(predictions[0][1] - predictions[1][1]).max() < 1e-3


def test_finetune_from_checkpoint_keeps_the_foundation_type_map(aiida_profile_clean, dp_code, tiny_checkpoint):
    training = LabeledDataset.from_ase(emt_frames('Cu', 6, seed=4)).store()  # type map ['Cu'] only
    builder = DeepmdTrainCalculation.get_builder()
    builder.code = dp_code
    builder.training_set = training
    builder.finetune_from = tiny_checkpoint
    builder.parameters = orm.Dict(scratch_parameters(numb_steps=10))

    results, node = run_get_node(builder)

    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert results['model'].type_map == ['Cu', 'Si']
    assert '--finetune' in node.base.repository.get_object_content('_aiidasubmit.sh')


@pytest.mark.parametrize(
    ('change', 'message'),
    [
        ({'unlabelled': True}, 'training_set: the dataset has no energies'),
        ({'no_model': True}, 'needs `model.descriptor` and `model.fitting_net`'),
        ({'no_steps': True}, '`training.numb_steps` is required'),
        ({'branch': 'EMT_Cu'}, 'model_branch: only meaningful with `finetune_from`'),
        ({'settings': {'compress': 'yes'}}, r'settings: `compress` is .yes.; give True, False or a dict'),
        ({'settings': {'compress': {'stride': 0.1}}}, r"unknown options \['stride'\]"),
        ({'settings': {'compress': {'step': -0.1}}}, r'`compress.step` must be > 0'),
        ({'settings': {'freeze': 'no'}}, r"settings: `freeze` is 'no'; give True"),
        ({'settings': {'freeze': False, 'compress': True}}, r'`compress` needs the frozen model'),
    ],
)
def test_inputs_are_validated(aiida_profile_clean, dp_code, change, message):
    parameters = scratch_parameters()
    if change.get('no_model'):
        del parameters['model']['descriptor']
    if change.get('no_steps'):
        del parameters['training']['numb_steps']
    if change.get('unlabelled'):
        dataset = LabeledDataset.from_structures([orm.StructureData(ase=bulk('Cu', 'fcc', a=3.6))])
    else:
        dataset = LabeledDataset.from_ase(emt_frames('Cu', 2))
    builder = DeepmdTrainCalculation.get_builder()
    builder.code = dp_code
    builder.training_set = dataset.store()
    builder.parameters = orm.Dict(parameters)
    if 'branch' in change:
        builder.model_branch = orm.Str(change['branch'])
    if 'settings' in change:
        builder.settings = orm.Dict(change['settings'])
    with pytest.raises(ValueError, match=message):
        run_get_node(builder)


def test_finetune_rejects_elements_outside_the_foundation(aiida_profile_clean, dp_code, tiny_checkpoint, tiny_model):
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = bulk('Al', 'fcc', a=4.05)
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((1, 3)))
    builder = DeepmdTrainCalculation.get_builder()
    builder.code = dp_code
    builder.training_set = LabeledDataset.from_ase([atoms]).store()
    builder.parameters = orm.Dict(scratch_parameters())
    builder.finetune_from = tiny_checkpoint
    with pytest.raises(ValueError, match=r"elements \['Al'\] are not in the type map"):
        run_get_node(builder)
    builder.finetune_from = tiny_model
    with pytest.raises(ValueError, match='needs a DeePMD-kit training checkpoint'):
        run_get_node(builder)


def test_finetune_a_multitask_branch(aiida_profile_clean, dp_code, multitask_checkpoint):
    assert multitask_checkpoint.heads == ['EMT_Al', 'EMT_Cu']
    training = LabeledDataset.from_ase(emt_frames('Cu', 6, seed=5)).store()
    parameters = scratch_parameters(numb_steps=10)
    del parameters['model']  # taken from the checkpoint's branch
    builder = DeepmdTrainCalculation.get_builder()
    builder.code = dp_code
    builder.training_set = training
    builder.finetune_from = multitask_checkpoint
    builder.model_branch = orm.Str('EMT_Cu')
    builder.settings = orm.Dict({'use_pretrain_script': True})
    builder.parameters = orm.Dict(parameters)

    results, node = run_get_node(builder)

    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert results['checkpoint'].heads == []  # fine-tuning one branch gives a single-task model
    assert results['checkpoint'].base.attributes.get('descriptor') == 'dpa3'
    assert results['model'].type_map == ['Al', 'Cu', 'Si']
    submit_script = node.base.repository.get_object_content('_aiidasubmit.sh')
    assert "'--model-branch' 'EMT_Cu'" in submit_script or '--model-branch EMT_Cu' in submit_script

    builder.model_branch = orm.Str('EMT_Si')
    with pytest.raises(ValueError, match=r'`EMT_Si` is not a branch.*EMT_Al, EMT_Cu'):
        run_get_node(builder)
