"""``pfd.model``: metadata read from the file, rejection of non-models, the ASE calculator."""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pytest
from ase.build import bulk

from aiida_pfd.backends import get_backend
from aiida_pfd.data import ModelData


def test_checkpoint_metadata(aiida_profile_clean, tiny_model_files):
    model = ModelData(tiny_model_files['checkpoint']).store()
    assert (model.model_backend, model.kind, model.type_map, model.heads) == ('deepmd', 'checkpoint', ['Cu', 'Si'], [])
    assert model.base.attributes.get('descriptor') == 'se_e2_a'
    assert model.sha256 == hashlib.sha256(tiny_model_files['checkpoint'].read_bytes()).hexdigest()


def test_frozen_metadata(aiida_profile_clean, tiny_model_files):
    model = ModelData(tiny_model_files['frozen']).store()
    assert (model.kind, model.type_map, model.heads) == ('frozen', ['Cu', 'Si'], [])
    assert model.base.attributes.get('rcut') == pytest.approx(4.5)
    assert model.missing_elements(['Si', 'Cu', 'Al', 'O']) == ['Al', 'O']


def test_model_from_stream_keeps_the_file(aiida_profile_clean, tiny_model_files):
    with open(tiny_model_files['frozen'], 'rb') as handle:
        model = ModelData(handle, filename='student.pth').store()
    assert model.filename == 'student.pth'
    assert model.kind == 'frozen'


def test_files_that_are_not_models_are_rejected(aiida_profile_clean, tmp_path):
    text = tmp_path / 'input.json'
    text.write_text('{"model": {}}')
    with pytest.raises(ValueError, match=r'not a DeePMD-kit PyTorch model.*not a PyTorch archive'):
        ModelData(text)
    archive = tmp_path / 'other.pt'
    with zipfile.ZipFile(archive, 'w') as handle:
        handle.writestr('data.txt', 'nothing')
    with pytest.raises(ValueError, match='not a DeePMD-kit PyTorch model'):
        ModelData(archive)
    with pytest.raises(ValueError, match='unknown model backend `mace`'):
        ModelData(text, model_backend='mace')


def test_calculator_matches_deepmd_directly(aiida_profile_clean, tiny_model_files):
    from deepmd.calculator import DP

    atoms = bulk('Cu', 'fcc', a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    model = ModelData(tiny_model_files['frozen']).store()
    atoms.calc = model.get_calculator()
    ours = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = DP(model=str(tiny_model_files['frozen']))
    np.testing.assert_allclose(ours[0], atoms.get_potential_energy(), atol=1e-10)
    np.testing.assert_allclose(ours[1], atoms.get_forces(), atol=1e-10)


def test_backend_registry():
    assert get_backend('deepmd').suffixes == {'checkpoint': '.pt', 'frozen': '.pth'}
    with pytest.raises(ValueError, match='choose one of deepmd'):
        get_backend('nequip')
