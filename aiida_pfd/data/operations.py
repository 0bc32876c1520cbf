"""Dataset transformations as calcfunctions, so that provenance records every merge, split and subset."""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from .dataset import LabeledDataset, frame_slices


def select_frames(dataset: LabeledDataset, indices) -> LabeledDataset:
    """A new (unstored) dataset of the frames ``indices`` of ``dataset``; for use inside calcfunctions."""
    return LabeledDataset(_select(dataset, indices), type_map=dataset.type_map)


def _select(dataset: LabeledDataset, indices) -> list:
    """dpdata systems holding the frames ``indices`` (global frame numbers) of ``dataset``, in system order."""
    wanted = np.asarray(sorted(set(int(i) for i in indices)), dtype=int)
    if wanted.size and (wanted[0] < 0 or wanted[-1] >= dataset.n_frames):
        raise ValueError(f'frame indices must lie in [0, {dataset.n_frames}), got {wanted[0]}..{wanted[-1]}.')
    systems = []
    for system, (start, stop) in zip(dataset.to_dpdata(), frame_slices(dataset)):
        local = wanted[(wanted >= start) & (wanted < stop)] - start
        if local.size:
            systems.append(system.sub_system(local))
    return systems


@calcfunction
def merge_datasets(**datasets: LabeledDataset) -> LabeledDataset:
    """Merge datasets (in keyword order) into one; the type map is the union, first dataset's order first."""
    return merged(datasets)


def merged(datasets: dict[str, LabeledDataset]) -> LabeledDataset:
    """A new (unstored) dataset of ``datasets`` merged in key order; for use inside calcfunctions."""
    if not datasets:
        raise ValueError('nothing to merge.')
    ordered = [datasets[key] for key in sorted(datasets)]
    type_map: list[str] = []
    for dataset in ordered:
        type_map.extend(name for name in dataset.type_map if name not in type_map)
    systems = [system for dataset in ordered for system in dataset.to_dpdata()]
    return LabeledDataset(systems, type_map=type_map)


@calcfunction
def split_dataset(dataset: LabeledDataset, test_fraction: orm.Float, seed: orm.Int) -> dict:
    """Split ``dataset`` at random (seeded) into ``train`` and ``test``, ``test_fraction`` of the frames in ``test``."""
    fraction = test_fraction.value
    if not 0.0 < fraction < 1.0:
        raise ValueError(f'test_fraction must lie strictly between 0 and 1, got {fraction}.')
    n_test = round(fraction * dataset.n_frames)
    if n_test == 0 or n_test == dataset.n_frames:
        raise ValueError(f'a test fraction of {fraction} of {dataset.n_frames} frames leaves one side empty.')
    order = np.random.default_rng(seed.value).permutation(dataset.n_frames)
    test, train = order[:n_test], order[n_test:]
    return {'train': select_frames(dataset, train), 'test': select_frames(dataset, test)}


@calcfunction
def subset_dataset(dataset: LabeledDataset, indices: orm.List) -> LabeledDataset:
    """The frames ``indices`` (global frame numbers) of ``dataset``."""
    if not indices.get_list():
        raise ValueError('a subset needs at least one frame index.')
    return select_frames(dataset, indices.get_list())


@calcfunction
def with_type_map(dataset: LabeledDataset, type_map: orm.List) -> LabeledDataset:
    """``dataset`` with ``type_map`` (which must hold every element present), e.g. a model's frames restricted to the
    elements of a training set."""
    missing = sorted(set(dataset.elements) - set(type_map.get_list()))
    if missing:
        raise ValueError(f'type map {type_map.get_list()} lacks the elements {missing} of the dataset.')
    return LabeledDataset(dataset.to_dpdata(), type_map=type_map.get_list())
