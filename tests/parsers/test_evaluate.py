"""``pfd.evaluate`` parser on fixture folders holding what the real evaluate script writes (``fixtures/evaluate``)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from aiida_pfd.data import LabeledDataset
from aiida_pfd.testing.models import emt_frames

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'evaluate'


def reference(n_frames: int) -> LabeledDataset:
    """The fixtures were made with ``emt_frames('Cu', n_frames=3, seed=3)`` (the parser only counts frames)."""
    return LabeledDataset.from_ase(emt_frames('Cu', n_frames=n_frames, seed=3), type_map=['Cu', 'Si'])


def test_ok(aiida_profile_clean, parse_retrieved):
    results, calcfunction = parse_retrieved('pfd.evaluate', FIXTURES / 'ok', inputs={'reference': reference(3)})

    assert calcfunction.is_finished_ok, calcfunction.exit_message
    errors, metrics = results['errors'], results['metrics'].get_dict()
    assert set(errors.get_arraynames()) == {
        'natoms',
        'energy_per_atom_reference',
        'energy_per_atom_predicted',
        'energy_per_atom_error',
        'max_force_error',
        'force_rmse',
        'virial_per_atom_error',
    }
    assert errors.get_shape('virial_per_atom_error') == (3, 9)
    np.testing.assert_array_equal(errors.get_array('natoms'), [4, 4, 4])
    energy_errors = errors.get_array('energy_per_atom_error')
    assert metrics['energy_rmse_per_atom'] == pytest.approx(np.sqrt(np.mean(energy_errors**2)))
    assert metrics['max_force_error'] == pytest.approx(errors.get_array('max_force_error').max())
    assert metrics['n_frames'] == 3 and metrics['n_atoms'] == 12
    assert metrics['units']['force_rmse'] == 'eV/Å' and metrics['units']['virial_mae_per_atom'] == 'eV/atom'


@pytest.mark.parametrize(
    ('case', 'n_frames', 'exit_status', 'message'),
    [
        ('missing_output', 3, 301, 'errors.npz, metrics.json not found'),
        ('script_failed', 3, 302, 'ValueError: The provided filename'),
        ('unparsable', 3, 310, 'errors.npz'),
        ('count_mismatch', 3, 320, '3 reference frames'),
        ('ok', 2, 320, '2 reference frames'),
        ('non_finite', 2, 400, 'the model gave NaN or infinite energy, forces or virial in frame(s) 1'),
        ('non_finite_reference', 2, 401, 'the frames carry NaN or infinite energy, forces or virial in frame(s) 1'),
    ],
)
def test_exit_codes(aiida_profile_clean, parse_retrieved, case, n_frames, exit_status, message):
    results, calcfunction = parse_retrieved('pfd.evaluate', FIXTURES / case, inputs={'reference': reference(n_frames)})

    assert calcfunction.exit_status == exit_status
    assert message in calcfunction.exit_message
    assert not results
