"""Compare a model's predictions with the labels of a reference dataset, frame by frame.

``input.json``: ``model`` (``{"backend", "path", "head"}``) and ``reference`` (a folder of labelled deepmd/npy systems).
Frames are taken in the dataset's order (system by system). Output:

- ``errors.npz``: per-frame arrays ``natoms``, ``energy_per_atom_reference``, ``energy_per_atom_predicted``,
  ``energy_per_atom_error`` (eV/atom, predicted - reference), ``max_force_error`` (eV/Å, largest norm of an atom's
  force error), ``force_rmse`` (eV/Å, over all force components of the frame) and, when every frame has a reference
  virial, ``virial_per_atom_error`` (eV/atom, ``(n_frames, 9)``, predicted - reference).
- ``metrics.json``: RMSE and MAE over all frames (see :func:`metrics`).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from .common import get_calculator, load_frames, main_guard
from .label import Labels, predict_frames

ERRORS_FILE = 'errors.npz'
METRICS_FILE = 'metrics.json'

UNITS = {
    'energy_rmse_per_atom': 'eV/atom',
    'energy_mae_per_atom': 'eV/atom',
    'force_rmse': 'eV/Å',
    'force_mae': 'eV/Å',
    'max_force_error': 'eV/Å',
    'virial_rmse_per_atom': 'eV/atom',
    'virial_mae_per_atom': 'eV/atom',
}


def errors(reference: Labels, predicted: Labels) -> dict[str, np.ndarray]:
    """Per-frame error arrays of ``predicted`` against ``reference`` (see the module docstring)."""
    natoms = reference.natoms
    force_errors = [p - r for p, r in zip(predicted.forces, reference.forces)]
    arrays = {
        'natoms': natoms,
        'energy_per_atom_reference': reference.energies / natoms,
        'energy_per_atom_predicted': predicted.energies / natoms,
        'energy_per_atom_error': (predicted.energies - reference.energies) / natoms,
        'max_force_error': np.array([np.linalg.norm(d, axis=1).max() for d in force_errors]),
        'force_rmse': np.array([np.sqrt(np.mean(d**2)) for d in force_errors]),
    }
    if all(v is not None for v in (*reference.virials, *predicted.virials)):
        difference = np.array(predicted.virials) - np.array(reference.virials)
        arrays['virial_per_atom_error'] = difference.reshape(-1, 9) / natoms[:, None]
    return arrays


def metrics(arrays: dict[str, np.ndarray], reference: Labels, predicted: Labels) -> dict:
    """RMSE and MAE over all frames: energies per atom, all force components, all virial components per atom."""
    force_errors = np.concatenate([(p - r).ravel() for p, r in zip(predicted.forces, reference.forces)])
    energy_errors = arrays['energy_per_atom_error']
    result = {
        'n_frames': len(energy_errors),
        'n_atoms': int(arrays['natoms'].sum()),
        'energy_rmse_per_atom': float(np.sqrt(np.mean(energy_errors**2))),
        'energy_mae_per_atom': float(np.mean(np.abs(energy_errors))),
        'force_rmse': float(np.sqrt(np.mean(force_errors**2))),
        'force_mae': float(np.mean(np.abs(force_errors))),
        'max_force_error': float(arrays['max_force_error'].max()),
    }
    if 'virial_per_atom_error' in arrays:
        virial_errors = arrays['virial_per_atom_error']
        result['virial_rmse_per_atom'] = float(np.sqrt(np.mean(virial_errors**2)))
        result['virial_mae_per_atom'] = float(np.mean(np.abs(virial_errors)))
    result['units'] = {key: unit for key, unit in UNITS.items() if key in result}
    return result


def run(parameters: dict) -> None:
    frames = load_frames(parameters['reference'])
    reference = predict_frames(frames, None, non_finite='ERROR_NON_FINITE_REFERENCE')
    predicted = predict_frames(frames, get_calculator(parameters['model']), non_finite='ERROR_NON_FINITE_PREDICTIONS')
    arrays = errors(reference, predicted)
    np.savez(ERRORS_FILE, **arrays)
    summary = metrics(arrays, reference, predicted)
    pathlib.Path(METRICS_FILE).write_text(json.dumps(summary, indent=2))
    print(f'evaluated {len(frames)} frames: ' + ', '.join(f'{k}={v:.4g}' for k, v in summary.items() if k != 'units'))


if __name__ == '__main__':
    main_guard(run)
