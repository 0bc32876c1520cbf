"""Frame generation and selection for the fine-tuning loop, as calcfunctions so provenance shows why a frame was kept.

* :func:`perturb_structure`: random cell strain and atom displacements of a structure (dpdata's ``perturb``).
* :func:`select_candidates`: before DFT, drop unphysical frames (atoms closer than ``min_distance``) and pick at most
  ``max_frames`` diverse ones, at random (seeded) or by greatest entropy gain (QUESTS descriptors).
* :func:`error_band_groups` / :func:`select_by_error`: after DFT, the frames whose max-atom force error lies in the
  band [lower, upper] (indices; or the split datasets). The PFD loop's roles are decided by
  :func:`aiida_pfd.ledger.assess_iteration`.
* :func:`is_converged`: the loop's stopping rule.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from .data import LabeledDataset
from .data.operations import select_frames

DIVERSITY_METHODS = ('random', 'entropy')


def min_interatomic_distance(atoms) -> float:
    """Shortest distance between two atoms of ``atoms`` (minimum image convention), ``inf`` for a single atom."""
    if len(atoms) < 2:
        if atoms.pbc.any():  # an atom and its own periodic images
            return float(min(np.linalg.norm(atoms.cell[:], axis=1)[atoms.pbc]))
        return float('inf')
    distances = atoms.get_all_distances(mic=atoms.pbc.any())
    np.fill_diagonal(distances, np.inf)
    return float(distances.min())


def _strip_labels(frames):
    for atoms in frames:
        atoms.calc = None
        atoms.info.pop('virial', None)
    return frames


@calcfunction
def perturb_structure(structure: orm.StructureData, parameters: orm.Dict) -> LabeledDataset:
    """Unlabelled frames: ``frames`` random perturbations of ``structure`` (optionally first made a ``supercell``).

    ``cell_fraction`` bounds the random cell deformation, ``atom_displacement`` (Å) the atom displacements
    (dpdata ``perturb`` with ``atom_pert_style='uniform'``); ``seed`` makes it reproducible.
    """
    import dpdata

    settings = {'frames': 5, 'cell_fraction': 0.03, 'atom_displacement': 0.1, 'supercell': None, 'seed': 0}
    settings.update(parameters.get_dict())
    atoms = structure.get_ase()
    if settings['supercell']:
        atoms = atoms.repeat(tuple(settings['supercell']))
    state = np.random.get_state()
    np.random.seed(settings['seed'])  # dpdata's perturb draws from numpy's global generator
    try:
        perturbed = dpdata.System(atoms, fmt='ase/structure').perturb(
            pert_num=settings['frames'],
            cell_pert_fraction=settings['cell_fraction'],
            atom_pert_distance=settings['atom_displacement'],
            atom_pert_style='uniform',
        )
    finally:
        np.random.set_state(state)
    return LabeledDataset.from_ase(perturbed.to('ase/structure'))


def _entropy_order(candidates, reference, count: int, cutoff: float, bandwidth: float) -> list[int]:
    """Greedy choice of ``count`` candidate frames, each adding the most entropy to ``reference`` + those chosen."""
    from quests.descriptor import get_descriptors
    from quests.entropy import delta_entropy

    per_frame = [get_descriptors([atoms], cutoff=cutoff) for atoms in candidates]
    known = get_descriptors(reference, cutoff=cutoff) if reference else None
    chosen: list[int] = []
    for _ in range(min(count, len(candidates))):
        best, best_gain = None, -np.inf
        for index, descriptors in enumerate(per_frame):
            if index in chosen:
                continue
            gain = np.inf if known is None else float(np.mean(delta_entropy(descriptors, known, h=bandwidth)))
            if gain > best_gain:
                best, best_gain = index, gain
        chosen.append(best)
        known = per_frame[best] if known is None else np.concatenate([known, per_frame[best]])
    return chosen


@calcfunction
def select_candidates(candidates: LabeledDataset, parameters: orm.Dict, **reference: LabeledDataset) -> dict:
    """Pick the frames of ``candidates`` worth a DFT label.

    ``parameters``: ``max_frames``, ``min_distance`` (Å; closer atoms mean an unphysical frame), ``diversity``
    (``random`` or ``entropy``), ``seed``, and for ``entropy`` the QUESTS ``cutoff`` (Å) and ``bandwidth``. The optional
    ``reference`` datasets (e.g. the training set) are what the entropy gain is measured against.
    Outputs: ``selected`` (unlabelled frames; absent when none is left) and ``report`` (counts and indices).
    """
    settings = {'max_frames': 10, 'min_distance': 1.0, 'diversity': 'random', 'seed': 0, 'cutoff': 5.0}
    settings.update(parameters.get_dict())
    if settings['diversity'] not in DIVERSITY_METHODS:
        raise ValueError(f'diversity must be one of {DIVERSITY_METHODS}, got `{settings["diversity"]}`.')

    frames = candidates.to_ase()
    sane = [i for i, atoms in enumerate(frames) if min_interatomic_distance(atoms) >= settings['min_distance']]
    count = min(settings['max_frames'], len(sane))
    if settings['diversity'] == 'random':
        rng = np.random.default_rng(settings['seed'])
        chosen = sorted(int(i) for i in rng.choice(sane, size=count, replace=False)) if count else []
    else:
        reference_frames = [atoms for dataset in reference.values() for atoms in dataset.to_ase()]
        bandwidth = settings.get('bandwidth', 0.015)
        order = _entropy_order([frames[i] for i in sane], reference_frames, count, settings['cutoff'], bandwidth)
        chosen = sorted(sane[i] for i in order)

    report = {
        'n_candidates': len(frames),
        'n_unphysical': len(frames) - len(sane),
        'n_selected': len(chosen),
        'selected_indices': chosen,
        'diversity': settings['diversity'],
    }
    outputs = {'report': orm.Dict(report)}
    if chosen:
        outputs['selected'] = LabeledDataset.from_ase(
            _strip_labels([frames[i] for i in chosen]), type_map=candidates.type_map
        )
    return outputs


def error_band_groups(errors, lower: float, upper: float) -> dict[str, np.ndarray]:
    """Frame indices by max-atom force error (eV/Å): ``added`` in [lower, upper], ``accurate`` below ``lower``,
    ``unphysical`` above ``upper`` or not finite."""
    errors = np.asarray(errors, dtype=float)
    return {
        'added': np.flatnonzero((errors >= lower) & (errors <= upper)),
        'accurate': np.flatnonzero(errors < lower),
        'unphysical': np.flatnonzero(~(errors <= upper)),  # NaN counts as unphysical
    }


@calcfunction
def select_by_error(dataset: LabeledDataset, max_force_error: orm.ArrayData, band: orm.Dict) -> dict:
    """Split DFT-labelled ``dataset`` by the model's max-atom force error (eV/Å, array ``max_force_error``).

    Frames with error < ``lower`` are ``accurate`` (the model knows them already), frames with error > ``upper``
    (or not finite) ``unphysical`` (dropped), the rest ``added``. Empty outputs are left out; ``report`` always.
    """
    lower, upper = band['lower'], band['upper']
    errors = np.asarray(max_force_error.get_array('max_force_error'), dtype=float)
    if errors.shape != (dataset.n_frames,):
        raise ValueError(f'{errors.size} force errors for a dataset of {dataset.n_frames} frames.')
    groups = error_band_groups(errors, lower, upper)
    outputs = {
        'report': orm.Dict(
            {
                **{f'n_{name}': int(indices.size) for name, indices in groups.items()},
                **{f'{name}_indices': [int(i) for i in indices] for name, indices in groups.items()},
                'lower': lower,
                'upper': upper,
            }
        )
    }
    for name, indices in groups.items():
        if indices.size:
            outputs[name] = select_frames(dataset, indices)
    return outputs


def is_converged(metrics: dict, targets: dict) -> tuple[bool, str]:
    """Whether ``metrics`` (``force_rmse`` eV/Å, ``energy_rmse_per_atom`` eV/atom) meet ``targets``.

    ``targets``: ``force_rmse`` and optionally ``energy_rmse`` (eV/atom). Returns the decision and its reason.
    """
    checks = [('force_rmse', 'force_rmse', 'eV/Å')]
    if targets.get('energy_rmse') is not None:
        checks.append(('energy_rmse_per_atom', 'energy_rmse', 'eV/atom'))
    reasons = []
    converged = True
    for metric, target, unit in checks:
        value, limit = metrics[metric], targets[target]
        ok = bool(np.isfinite(value) and value <= limit)
        converged &= ok
        reasons.append(f'{metric} {value:.4g} {"<=" if ok else ">"} {limit:.4g} {unit}')
    return converged, '; '.join(reasons)
