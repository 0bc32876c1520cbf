"""Parser of ``pfd.sevenn.train`` on fixture folders (real sevenn 0.13 output, trimmed), one per exit code.

Checkpoints are never fixtures: the shipped SevenNet-0 checkpoint is copied in at test time.
"""

from __future__ import annotations

import pathlib

import pytest

from aiida_pfd.backends import get_backend

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'sevenn_train'


@pytest.fixture(scope='module')
def checkpoint():
    """A real sevenn checkpoint file (the shipped SevenNet-0, epoch 600)."""
    return get_backend('sevenn').shipped_path('sevennet-0')


def test_ok_takes_the_best_checkpoint(aiida_profile_clean, parse_retrieved, checkpoint):
    files = {'checkpoint_best.pth': checkpoint, 'checkpoint_2.pth': b'not read: the best checkpoint wins'}
    results, calcfunction = parse_retrieved('pfd.sevenn.train', FIXTURES / 'ok', files)
    assert calcfunction.is_finished_ok, calcfunction.exit_message
    metrics = results['metrics'].get_dict()
    assert metrics['epoch'] == 2
    assert metrics['rmse_e_trn'] == pytest.approx(0.219048)
    assert metrics['rmse_f_val'] == pytest.approx(0.339747)
    assert metrics['loss_val'] == pytest.approx(0.001678)
    assert metrics['units'] == {'rmse_e': 'eV/atom', 'rmse_f': 'eV/Å'}
    assert (metrics['model_file'], metrics['model_epoch']) == ('checkpoint_best.pth', 600)
    curve = results['learning_curve']
    assert list(curve.get_array('epoch')) == [1, 2]
    assert curve.base.attributes.get('columns')[:3] == ['epoch', 'lr', 'trainset_Energy_RMSE']
    model = results['model']
    assert (model.model_backend, model.kind, model.filename) == ('sevenn', 'checkpoint', 'checkpoint_best.pth')


def test_without_best_checkpoint_takes_the_last_epoch(aiida_profile_clean, parse_retrieved, checkpoint):
    results, calcfunction = parse_retrieved('pfd.sevenn.train', FIXTURES / 'ok', {'checkpoint_2.pth': checkpoint})
    assert calcfunction.is_finished_ok, calcfunction.exit_message
    assert results['model'].filename == 'checkpoint_2.pth'


@pytest.mark.parametrize(
    ('case', 'status', 'message'),
    [
        ('missing_learning_curve', 301, 'lc.csv was not written'),
        ('training_failed', 302, 'RuntimeError: Error(s) in loading state_dict for AtomGraphSequential'),
        ('crashed_after_epoch', 302, 'KeyboardInterrupt'),
        ('missing_model', 303, 'no checkpoint_best.pth or checkpoint_2.pth (found: none)'),
        ('invalid_learning_curve', 310, 'line 3 has 3 fields, the header 8'),
        ('nan_loss', 400, 'NaN or infinite at epoch 1'),
    ],
)
def test_failures(aiida_profile_clean, parse_retrieved, case, status, message):
    results, calcfunction = parse_retrieved('pfd.sevenn.train', FIXTURES / case)
    assert calcfunction.exit_status == status
    assert message in calcfunction.exit_message
    if case in ('crashed_after_epoch', 'nan_loss'):
        assert 'learning_curve' in results and 'model' not in results


def test_unreadable_checkpoint(aiida_profile_clean, parse_retrieved):
    _, calcfunction = parse_retrieved('pfd.sevenn.train', FIXTURES / 'ok', {'checkpoint_best.pth': b'not a model'})
    assert calcfunction.exit_status == 311
    assert 'not a PyTorch archive' in calcfunction.exit_message


def test_validation_errors_without_validation_frames_are_none(aiida_profile_clean, parse_retrieved, checkpoint):
    lines = (FIXTURES / 'ok' / 'lc.csv').read_text().splitlines()
    nan_valid = [lines[0]] + [','.join(row.split(',')[:5] + ['nan'] * 3) for row in lines[1:]]
    files = {'lc.csv': '\n'.join(nan_valid).encode(), 'checkpoint_2.pth': checkpoint}
    folder = {name: FIXTURES / 'ok' / name for name in ('log.sevenn', 'sevenn.out')}
    results, calcfunction = parse_retrieved('pfd.sevenn.train', files={**folder, **files})
    assert calcfunction.is_finished_ok, calcfunction.exit_message
    metrics = results['metrics'].get_dict()
    assert metrics['rmse_f_val'] is None
    assert metrics['rmse_f_trn'] == pytest.approx(0.234257)
