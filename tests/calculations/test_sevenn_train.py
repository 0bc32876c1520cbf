"""``pfd.sevenn.train``: a real 2-epoch ``sevenn train`` fine-tune of SevenNet-0 on CPU, and input validation."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory
from ase.build import bulk

from aiida_pfd.data import LabeledDataset, ModelData

SevennTrainCalculation = CalculationFactory('pfd.sevenn.train')


@pytest.fixture(scope='module')
def si_frames():
    """Ten rattled, strained 8-atom diamond Si cells labelled by SevenNet-0 with a shift and scaled forces/stress.

    The perturbation (+0.05 eV/atom, forces and stress x1.1) stands for the difference between the foundation and a
    DFT reference, so that fine-tuning has something to learn.
    """
    from ase.calculators.singlepoint import SinglePointCalculator
    from sevenn.calculator import SevenNetCalculator

    calculator = SevenNetCalculator('7net-0', device='cpu')
    rng = np.random.default_rng(0)
    frames = []
    for index in range(10):
        atoms = bulk('Si', 'diamond', a=5.43 * (1 + rng.uniform(-0.01, 0.01)), cubic=True)
        atoms.rattle(0.05, seed=index)
        atoms.calc = calculator
        energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(
            atoms, energy=energy + 0.05 * len(atoms), forces=1.1 * forces, stress=1.1 * stress
        )
        frames.append(atoms)
    return frames


@pytest.fixture
def sevennet0(aiida_profile_clean):
    return ModelData.from_shipped('sevennet-0').store()


def builder_for(code, foundation, training, validation=None, parameters=None):
    builder = SevennTrainCalculation.get_builder()
    builder.code = code
    builder.finetune_from = foundation
    builder.training_set = training
    if validation is not None:
        builder.validation_set = validation
    if parameters is not None:
        builder.parameters = orm.Dict(parameters)
    return builder


def test_finetune_sevennet0(aiida_profile_clean, python_code, sevennet0, si_frames):
    training = LabeledDataset.from_ase(si_frames).store()
    parameters = {'train': {'epoch': 2}, 'data': {'data_divide_ratio': 0.2, 'batch_size': 4}}

    results, node = run_get_node(builder_for(python_code, sevennet0, training, parameters=parameters))

    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    model = results['model']
    assert (model.model_backend, model.kind, model.filename) == ('sevenn', 'checkpoint', 'checkpoint_best.pth')
    assert model.type_map == sevennet0.type_map and model.sha256 != sevennet0.sha256
    curve = results['learning_curve']
    assert list(curve.get_array('epoch')) == [1, 2]
    assert 'validset_Force_RMSE' in curve.base.attributes.get('columns')
    metrics = results['metrics'].get_dict()
    assert metrics['epoch'] == 2 and metrics['model_epoch'] in (1, 2)
    assert {'rmse_e_trn', 'rmse_f_trn', 'rmse_s_trn', 'rmse_e_val', 'rmse_f_val', 'rmse_s_val'} <= set(metrics)
    assert metrics['units'] == {'rmse_e': 'eV/atom', 'rmse_f': 'eV/Å', 'rmse_s': 'kbar', **metrics['units']}
    assert np.isfinite(metrics['rmse_f_val'])

    written = yaml.safe_load(node.base.repository.get_object_content('input.yaml'))
    assert written['train']['is_train_stress'] is True  # the frames carry stress
    assert written['train']['continue']['checkpoint'] == 'foundation/checkpoint_sevennet_0.pth'
    assert "'-m' 'sevenn.main.sevenn' 'train'" in node.base.repository.get_object_content('_aiidasubmit.sh')
    assert 'checkpoint_best.pth' not in node.outputs.retrieved.base.repository.list_object_names()  # temporary

    atoms = bulk('Si', 'diamond', a=5.43, cubic=True)
    atoms.rattle(0.05, seed=11)
    atoms.calc = model.get_calculator(device='cpu')
    assert np.isfinite(atoms.get_potential_energy()) and np.isfinite(atoms.get_forces()).all()


def test_input_with_validation_set_and_no_virial(
    aiida_profile_clean, python_code, sevennet0, si_frames, tmp_path, monkeypatch
):
    """Dry run: sevenn's input.yaml and the extxyz data files the job writes."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read

    unstressed = []
    for atoms in si_frames:
        copy = atoms.copy()
        copy.calc = SinglePointCalculator(copy, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        unstressed.append(copy)
    training = LabeledDataset.from_ase(unstressed[:8]).store()
    validation = LabeledDataset.from_ase(unstressed[8:]).store()
    parameters = {
        'train': {'epoch': 6, 'per_epoch': 3, 'optim_param': {'lr': 0.001}},
        'model': {'train_shift_scale': True},
    }
    builder = builder_for(python_code, sevennet0, training, validation, parameters)
    builder.metadata.dry_run = True
    builder.metadata.options.submit_script_filename = 'job.sh'
    monkeypatch.chdir(tmp_path)  # a dry run writes its folder under the working directory
    _, node = run_get_node(builder)

    folder = node.dry_run_info['folder']
    written = yaml.safe_load(open(f'{folder}/input.yaml'))
    assert written['model'] == {**sevennet0.base.attributes.get('model_config'), 'train_shift_scale': True}
    train, data = written['train'], written['data']
    assert (train['epoch'], train['per_epoch'], train['optim_param'], train['is_train_stress']) == (
        6,
        3,
        {'lr': 0.001},
        False,
    )
    assert train['loss'] == 'Huber' and train['force_loss_weight'] == 1.0
    assert data['load_trainset_path'] == ['datasets/training.extxyz']
    assert data['load_validset_path'] == ['datasets/validation.extxyz'] and 'data_divide_ratio' not in data
    frames = read(f'{folder}/datasets/training.extxyz', index=':')
    assert len(frames) == 8
    assert frames[3].get_potential_energy() == pytest.approx(unstressed[3].get_potential_energy())
    np.testing.assert_allclose(frames[3].get_forces(), unstressed[3].get_forces(), atol=1e-6)


@pytest.mark.parametrize(
    ('change', 'message'),
    [
        ({'unlabelled': True}, 'training_set: the dataset has no energies and forces'),
        ({'element': 'Po'}, r"training_set: elements \['Po'\] are not in the element list of the foundation"),
        ({'parameters': {'model': {'channel': 64}}}, r'`model.channel` must equal the foundation model \(128\)'),
        ({'parameters': {'data': {'load_trainset_path': ['x.extxyz']}}}, '`data.load_trainset_path` is set by the job'),
        ({'parameters': {'train': {'epoch': 5, 'per_epoch': 2}}}, r'`train.epoch` \(5\) must be a multiple'),
        ({'parameters': {'train': {'is_train_stress': True}}}, 'datasets have no virials'),
        ({'parameters': {'optimizer': 'adam'}}, r"unknown sections \['optimizer'\]"),
    ],
)
def test_inputs_are_validated(aiida_profile_clean, python_code, sevennet0, change, message):
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = bulk(change.get('element', 'Si'), 'diamond', a=5.43)
    if change.get('unlabelled'):
        training = LabeledDataset.from_structures([orm.StructureData(ase=atoms)])
    else:
        atoms.calc = SinglePointCalculator(atoms, energy=-10.0, forces=np.zeros((2, 3)))
        training = LabeledDataset.from_ase([atoms])
    builder = builder_for(python_code, sevennet0, training.store(), parameters=change.get('parameters'))
    with pytest.raises(ValueError, match=message):
        run_get_node(builder)


def test_foundation_must_be_a_sevenn_checkpoint(aiida_profile_clean, python_code, tiny_model):
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = bulk('Si', 'diamond', a=5.43)
    atoms.calc = SinglePointCalculator(atoms, energy=-10.0, forces=np.zeros((2, 3)))
    builder = builder_for(python_code, tiny_model, LabeledDataset.from_ase([atoms]).store())
    with pytest.raises(ValueError, match=r'finetune_from: needs a SevenNet checkpoint .* got a frozen deepmd model'):
        run_get_node(builder)
