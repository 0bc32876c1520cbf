"""Parser of ``pfd.deepmd.train`` on fixture folders (real DeePMD output, trimmed), one per exit code."""

from __future__ import annotations

import pathlib

import pytest

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'deepmd_train'


def test_ok(aiida_profile_clean, parse_retrieved, tiny_model_files):
    files = {'frozen_model.pth': tiny_model_files['frozen'], 'model.ckpt-50.pt': tiny_model_files['checkpoint']}
    results, calcfunction = parse_retrieved('pfd.deepmd.train', FIXTURES / 'ok', files)
    assert calcfunction.is_finished_ok, calcfunction.exit_message
    metrics = results['metrics'].get_dict()
    assert metrics['step'] == 48
    assert metrics['rmse_f_val'] == pytest.approx(0.426)
    assert metrics['rmse_e_trn'] == pytest.approx(1.54)
    assert metrics['units']['rmse_f'] == 'eV/Å'
    assert list(results['learning_curve'].get_array('step')) == [1, 12, 24, 36, 48]
    assert results['model'].kind == 'frozen'
    assert results['checkpoint'].filename == 'model.ckpt-50.pt'


@pytest.mark.parametrize(
    ('case', 'status', 'message'),
    [
        ('missing_lcurve', 301, 'lcurve.out was not written'),
        ('training_failed', 302, 'size mismatch'),
        ('missing_model', 303, "No such file or directory: 'model.ckpt.pt'"),
        ('invalid_lcurve', 310, 'lcurve.out could not be parsed'),
        ('nan_loss', 400, 'NaN or infinite at step 5'),
        ('nan_detected', 400, 'NaN or infinite at step 2'),  # deepmd-kit stops itself
    ],
)
def test_failures(aiida_profile_clean, parse_retrieved, case, status, message):
    _, calcfunction = parse_retrieved('pfd.deepmd.train', FIXTURES / case)
    assert calcfunction.exit_status == status
    assert message in calcfunction.exit_message


def test_unreadable_model(aiida_profile_clean, parse_retrieved, tiny_model_files):
    files = {'frozen_model.pth': b'not a model', 'model.ckpt-50.pt': tiny_model_files['checkpoint']}
    _, calcfunction = parse_retrieved('pfd.deepmd.train', FIXTURES / 'ok', files)
    assert calcfunction.exit_status == 311
    assert 'not a PyTorch archive' in calcfunction.exit_message


def test_validation_columns_without_reference_data_are_none(aiida_profile_clean, parse_retrieved, tiny_model_files):
    files = {'frozen_model.pth': tiny_model_files['frozen'], 'model.ckpt-48.pt': tiny_model_files['checkpoint']}
    results, calcfunction = parse_retrieved('pfd.deepmd.train', FIXTURES / 'nan_validation', files)
    assert calcfunction.is_finished_ok, calcfunction.exit_message
    metrics = results['metrics'].get_dict()
    assert metrics['rmse_f_val'] is None
    assert metrics['rmse_f_trn'] == pytest.approx(0.323)


def test_compressed_model_is_attached(aiida_profile_clean, parse_retrieved, tiny_model_files):
    from aiida import orm

    files = {
        'frozen_model.pth': tiny_model_files['frozen'],
        'frozen_model_compressed.pth': tiny_model_files['frozen'],
        'model.ckpt-50.pt': tiny_model_files['checkpoint'],
    }
    inputs = {'settings': orm.Dict({'compress': True})}
    results, calcfunction = parse_retrieved('pfd.deepmd.train', FIXTURES / 'ok', files, inputs)
    assert calcfunction.is_finished_ok, calcfunction.exit_message
    assert results['compressed_model'].kind == 'frozen'
    assert results['compressed_model'].filename == 'frozen_model_compressed.pth'


def test_compression_failure_keeps_the_frozen_model(aiida_profile_clean, parse_retrieved, tiny_model_files):
    from aiida import orm

    files = {'frozen_model.pth': tiny_model_files['frozen'], 'model.ckpt-50.pt': tiny_model_files['checkpoint']}
    inputs = {'settings': orm.Dict({'compress': {'step': 0.01}})}
    results, calcfunction = parse_retrieved('pfd.deepmd.train', FIXTURES / 'compress_failed', files, inputs)
    assert calcfunction.exit_status == 304
    assert 'Compression is unsupported for DPA3' in calcfunction.exit_message
    assert {'model', 'checkpoint', 'metrics'} <= set(results)
    assert 'compressed_model' not in results


def test_without_compression_a_missing_compressed_model_is_fine(aiida_profile_clean, parse_retrieved, tiny_model_files):
    from aiida import orm

    files = {'frozen_model.pth': tiny_model_files['frozen'], 'model.ckpt-50.pt': tiny_model_files['checkpoint']}
    inputs = {'settings': orm.Dict({'compress': False})}
    results, calcfunction = parse_retrieved('pfd.deepmd.train', FIXTURES / 'compress_failed', files, inputs)
    assert calcfunction.is_finished_ok, calcfunction.exit_message
    assert 'compressed_model' not in results


def test_without_freeze_the_last_checkpoint_is_the_model(aiida_profile_clean, parse_retrieved, tiny_model_files):
    from aiida import orm

    files = {'model.ckpt-40.pt': tiny_model_files['checkpoint'], 'model.ckpt-50.pt': tiny_model_files['checkpoint']}
    inputs = {'settings': orm.Dict({'freeze': False})}
    results, calcfunction = parse_retrieved('pfd.deepmd.train', FIXTURES / 'ok', files, inputs)
    assert calcfunction.is_finished_ok, calcfunction.exit_message
    assert results['model'].kind == 'checkpoint' and results['model'].filename == 'model.ckpt-50.pt'


def test_a_missing_frozen_model_is_an_error_when_freezing(aiida_profile_clean, parse_retrieved, tiny_model_files):
    _, calcfunction = parse_retrieved(
        'pfd.deepmd.train', FIXTURES / 'ok', {'model.ckpt-50.pt': tiny_model_files['checkpoint']}
    )
    assert calcfunction.exit_status == 303
    assert 'frozen model' in calcfunction.exit_message
