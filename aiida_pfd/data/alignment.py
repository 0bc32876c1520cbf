"""Align a foundation model's per-element energy zero with a DFT code's, before fine-tuning.

Universal models carry the energy zero of their training database (MPtrj for SevenNet-0: VASP PAW); another DFT code
with other pseudopotentials puts the same element tens or hundreds of eV per atom elsewhere. The offsets are fitted by
least squares on the foundation's errors on the first DFT frames: ``E_DFT - E_model = sum_element n_element *
offset_element`` per frame.
"""

from __future__ import annotations

import pathlib
import tempfile

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from ..backends import get_backend
from .dataset import LabeledDataset
from .model import ModelData


def composition_matrix(dataset: LabeledDataset) -> tuple[np.ndarray, list[str]]:
    """Atoms of each element per frame, ``(n_frames, n_elements)``, and the elements (type map order)."""
    rows = []
    for system in dataset.to_dpdata():
        counts = np.bincount(system['atom_types'], minlength=len(system['atom_names']))
        by_name = dict(zip(system['atom_names'], counts))
        rows.extend([[by_name.get(name, 0) for name in dataset.type_map]] * len(system))
    matrix = np.array(rows, dtype=float)
    present = matrix.sum(axis=0) > 0
    return matrix[:, present], [name for name, keep in zip(dataset.type_map, present) if keep]


def fit_offsets(natoms_by_element: np.ndarray, energy_difference: np.ndarray) -> np.ndarray:
    """Least-squares per-element offsets (eV) with ``natoms_by_element @ offsets ≈ energy_difference`` (eV/frame).

    Elements that always appear in the same ratio cannot be told apart: ``lstsq`` then gives the minimum-norm split,
    which is exact for every frame of that ratio.
    """
    offsets, *_ = np.linalg.lstsq(natoms_by_element, energy_difference, rcond=None)
    return offsets


@calcfunction
def fit_energy_offsets(errors: orm.ArrayData, dataset: LabeledDataset) -> orm.Dict:
    """Per-element offsets that best align a model's energies (``pfd.evaluate`` ``errors``) with ``dataset``'s."""
    natoms = errors.get_array('natoms')
    if len(natoms) != dataset.n_frames:
        raise ValueError(f'{len(natoms)} evaluated frames, {dataset.n_frames} in the dataset.')
    matrix, elements = composition_matrix(dataset)
    difference = -errors.get_array('energy_per_atom_error') * natoms  # reference - predicted, eV per frame
    offsets = fit_offsets(matrix, difference)
    residual = (difference - matrix @ offsets) / natoms
    return orm.Dict(
        {
            'offsets': {element: float(value) for element, value in zip(elements, offsets)},
            'mean_offset_per_atom': float(np.mean(difference / natoms)),
            'residual_energy_rmse_per_atom': float(np.sqrt(np.mean(residual**2))),
            'n_frames': len(natoms),
            'units': {
                'offsets': 'eV/atom',
                'mean_offset_per_atom': 'eV/atom',
                'residual_energy_rmse_per_atom': 'eV/atom',
            },
        }
    )


@calcfunction
def shift_model_energy(model: ModelData, alignment: orm.Dict) -> ModelData:
    """``model`` with ``alignment['offsets']`` (eV per atom of each element) added to its energy."""
    backend = get_backend(model.model_backend)
    with tempfile.TemporaryDirectory() as directory:
        source = pathlib.Path(directory) / model.filename
        target = pathlib.Path(directory) / f'aligned_{model.filename}'
        with model.open(mode='rb') as handle:
            source.write_bytes(handle.read())
        backend.shift_energy(source, alignment['offsets'], target)
        return ModelData(target, model_backend=model.model_backend, filename=model.filename)
