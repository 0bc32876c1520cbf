"""Independent DFT reference frames by category, and a model's errors on each category.

A reference file is an extended XYZ of DFT-labelled frames whose ``info`` holds a ``category`` (e.g. ``vacancy_15``,
``hot_16``); ``examples/data/si_reference.extxyz`` is the project's own for Si (``benchmarks/si_reference/build.py``).
:func:`load_reference` makes a ``pfd.dataset`` of them with the attribute ``frame_categories`` (in the dataset's frame
order), and :func:`category_errors` turns a ``pfd.evaluate`` job's per-frame errors on it into RMSEs per category.
"""

from __future__ import annotations

import pathlib
import typing as t

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from .data import LabeledDataset
from .data.dataset import system_order

CATEGORIES_ATTRIBUTE = 'frame_categories'


def load_reference(path: str | pathlib.Path, type_map: t.Sequence[str] | None = None) -> LabeledDataset:
    """The frames of ``path`` as an unstored ``pfd.dataset`` with ``frame_categories``."""
    from ase.io import read

    frames = read(path, index=':', format='extxyz')
    missing = [index for index, atoms in enumerate(frames) if 'category' not in atoms.info]
    if missing:
        raise ValueError(f'{path}: frames {missing[:5]} have no `category` in their info line.')
    dataset = LabeledDataset.from_ase(frames, type_map=type_map)
    dataset.base.attributes.set(CATEGORIES_ATTRIBUTE, [frames[i].info['category'] for i in system_order(frames)])
    return dataset


def frame_categories(dataset: LabeledDataset) -> list[str]:
    categories = dataset.base.attributes.get(CATEGORIES_ATTRIBUTE, None)
    if categories is None or len(categories) != dataset.n_frames:
        raise ValueError(
            f'{dataset}: no `{CATEGORIES_ATTRIBUTE}` with one entry per frame; load it with load_reference.'
        )
    return categories


def summarise(arrays: dict[str, np.ndarray], mask: np.ndarray) -> dict:
    """RMSEs of the frames in ``mask``: energy per atom, force (over all components), worst atom's force error."""
    natoms = arrays['natoms'][mask]
    components = 3 * natoms
    return {
        'n_frames': int(mask.sum()),
        'energy_rmse_per_atom': float(np.sqrt(np.mean(arrays['energy_per_atom_error'][mask] ** 2))),
        'force_rmse': float(np.sqrt(np.sum(components * arrays['force_rmse'][mask] ** 2) / components.sum())),
        'max_force_error': float(arrays['max_force_error'][mask].max()),
    }


@calcfunction
def category_errors(errors: orm.ArrayData, reference: LabeledDataset) -> orm.Dict:
    """Per category of ``reference`` (and ``overall``): n_frames, energy_rmse_per_atom (eV/atom), force_rmse and
    max_force_error (eV/Å), from a ``pfd.evaluate`` job's ``errors`` on ``reference``."""
    categories = np.array(frame_categories(reference))
    arrays = {name: errors.get_array(name) for name in errors.get_arraynames()}
    result = {name: summarise(arrays, categories == name) for name in dict.fromkeys(categories)}
    result['overall'] = summarise(arrays, np.ones(len(categories), bool))
    return orm.Dict(result)
