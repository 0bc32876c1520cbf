"""The sevenn backend on the universal models shipped inside ``sevenn``: metadata, calculator, ``from_shipped``."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from ase.build import bulk

from aiida_pfd.backends import get_backend, sevenn
from aiida_pfd.data import ModelData


@pytest.fixture(scope='module')
def backend():
    return get_backend('sevenn')


def rattled_si():
    atoms = bulk('Si', 'diamond', a=5.43, cubic=True)
    atoms.rattle(0.05, seed=7)
    return atoms


def test_shipped_sevennet0_metadata(backend):
    metadata = backend.read_metadata(backend.shipped_path('sevennet-0'))
    assert metadata.kind == 'checkpoint'
    assert len(metadata.type_map) == 89 and 'Si' in metadata.type_map
    assert metadata.heads == []
    assert metadata.extras['cutoff'] == 5.0
    assert metadata.extras['epoch'] == 600
    model_config = metadata.extras['model_config']
    assert model_config['channel'] == 128 and model_config['num_convolution_layer'] == 5


def test_calculator_matches_sevennet_directly(backend):
    from sevenn.calculator import SevenNetCalculator

    ours, theirs = rattled_si(), rattled_si()
    ours.calc = backend.calculator(backend.shipped_path('sevennet-0'), device='cpu')
    theirs.calc = SevenNetCalculator('7net-0', device='cpu')
    assert ours.get_potential_energy() == pytest.approx(theirs.get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(ours.get_forces(), theirs.get_forces(), atol=1e-6)
    assert np.abs(ours.get_forces()).max() > 0.01  # rattled: the comparison is not between zeros


def test_files_that_are_not_sevenn_models_are_rejected(backend, tmp_path):
    text = tmp_path / 'input.yaml'
    text.write_text('model: {}')
    with pytest.raises(ValueError, match=r'not a SevenNet model.*not a PyTorch archive'):
        backend.read_metadata(text)
    archive = tmp_path / 'other.pth'
    torch.save({'model': {'weights': torch.zeros(2)}}, archive)
    with pytest.raises(ValueError, match=r'not a SevenNet model.*no sevenn `config`'):
        backend.read_metadata(archive)


def test_from_shipped(aiida_profile_clean):
    model = ModelData.from_shipped('sevennet-0').store()
    path = get_backend('sevenn').shipped_path('sevennet-0')
    assert model.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (model.model_backend, model.kind, model.filename) == ('sevenn', 'checkpoint', path.name)
    assert model.base.attributes.get('shipped_name') == 'sevennet-0'
    assert model.base.attributes.get('cutoff') == 5.0
    assert model.missing_elements(['Si', 'O', 'Po']) == ['Po']


def test_from_shipped_l3i5_and_unknown_names(aiida_profile_clean):
    assert ModelData.from_shipped('sevennet-l3i5').base.attributes.get('model_config')['lmax'] == 3
    with pytest.raises(
        ValueError, match=r'unknown shipped model `7net-omni`: choose one of dpa4-neo, sevennet-0, sevennet-l3i5'
    ):
        ModelData.from_shipped('7net-omni')


def test_model_data_rejects_non_sevenn_files(aiida_profile_clean, tmp_path):
    other = tmp_path / 'model.pth'
    torch.save({'config': {}}, other)
    with pytest.raises(ValueError, match='not a SevenNet model'):
        ModelData(other, model_backend='sevenn')


def test_learning_curve_names():
    header = 'epoch,lr,trainset_Energy_RMSE,validset_Force_MAE,trainset_Stress_RMSE,validset_TotalLoss'
    text = f'{header}\n1,0.1,   0.5,0.2,3,1\n'
    columns, values = sevenn.read_learning_curve(text)
    metrics, units = sevenn.metrics_of_row(columns, values[-1])
    assert metrics == {'epoch': 1, 'lr': 0.1, 'rmse_e_trn': 0.5, 'mae_f_val': 0.2, 'rmse_s_trn': 3.0, 'loss_val': 1.0}
    assert units == {'rmse_e': 'eV/atom', 'mae_f': 'eV/Å', 'rmse_s': 'kbar'}


def test_deployed_model_metadata(backend, tmp_path):
    from sevenn.scripts.deploy import deploy

    deployed = tmp_path / 'deployed_serial.pt'
    deploy(str(backend.shipped_path('sevennet-0')), fname=str(deployed))
    metadata = backend.read_metadata(deployed)
    assert (metadata.kind, len(metadata.type_map), metadata.extras['cutoff']) == ('frozen', 89, 5.0)
    with pytest.raises(ValueError, match='sevenn runs only in LAMMPS'):
        backend.calculator(deployed)
