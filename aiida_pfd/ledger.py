"""The DFT ledger of a PFD run: the role of every DFT-labelled frame, decided by calcfunctions.

Roles:

* ``initial``: a perturbed input structure, trained on from the first fine-tuning;
* ``held_out``: a seeded share of every batch of DFT frames (the initial ones and each iteration's fresh ones), chosen
  before any model error is known, never trained on and never used for a decision: the test set;
* ``trained_on``: a fresh frame whose max-atom force error lay in the error band, added to the training set;
* ``accurate``: a fresh frame the model already knew (error below the band);
* ``unphysical``: a fresh frame with an error above the band (or not finite), dropped from training;
* ``not_trained``: a fresh frame in the band when the loop converged;
* ``unassessed``: a frame labelled when the run stopped before its errors were judged.

:func:`assign_initial_roles` and :func:`assess_iteration` decide the roles (and, for an iteration, convergence) so that
provenance shows why each frame went where it went; :func:`build_ledger` stores every frame with its role.
"""

from __future__ import annotations

import math

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from .data import LabeledDataset
from .data.operations import merged
from .selection import error_band_groups, is_converged

ROLES = ('initial', 'held_out', 'trained_on', 'accurate', 'unphysical', 'not_trained', 'unassessed')
#: Roles whose frames were trained on.
TRAINED_ROLES = ('initial', 'trained_on')


def role_counts(roles: list[str]) -> dict[str, int]:
    """How many frames have each role present in ``roles``, in the order of :data:`ROLES`."""
    return {role: roles.count(role) for role in ROLES if role in roles}


def held_out_indices(n_frames: int, fraction: float, seed: int) -> list[int]:
    """A seeded choice of ``ceil(fraction * n_frames)`` frames to hold out, leaving at least one frame of a batch of
    two or more (none of a single frame)."""
    count = min(math.ceil(fraction * n_frames), n_frames - 1) if n_frames > 1 else 0
    if count <= 0:
        return []
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n_frames, count, replace=False))


@calcfunction
def assign_initial_roles(parameters: orm.Dict) -> orm.Dict:
    """Roles of the initial DFT frames: ``held_out`` for a seeded share, ``initial`` (trained on) for the rest.

    ``parameters``: ``n_frames``, ``test_fraction``, ``seed``.
    """
    n_frames = int(parameters['n_frames'])
    held_out = held_out_indices(n_frames, parameters['test_fraction'], parameters['seed'])
    roles = ['held_out' if index in held_out else 'initial' for index in range(n_frames)]
    return orm.Dict({'roles': roles, 'held_out_indices': held_out, 'seed': parameters['seed']})


def subset_errors(arrays: dict, indices) -> dict:
    """Force RMSE (eV/Å, over all components), energy RMSE (eV/atom) and count of the frames ``indices``."""
    indices = np.asarray(list(indices), dtype=int)
    if indices.size == 0:
        return {'n_frames': 0, 'force_rmse': None, 'energy_rmse_per_atom': None}
    components = 3 * arrays['natoms'][indices]
    force = float(np.sqrt(np.sum(components * arrays['force_rmse'][indices] ** 2) / np.sum(components)))
    energy = float(np.sqrt(np.mean(arrays['energy_per_atom_error'][indices] ** 2)))
    return {'n_frames': int(indices.size), 'force_rmse': force, 'energy_rmse_per_atom': energy}


@calcfunction
def assess_iteration(errors: orm.ArrayData, parameters: orm.Dict) -> orm.Dict:
    """Judge one iteration's fresh DFT frames against the model that explored them.

    ``errors``: the per-frame arrays of ``pfd.evaluate`` on the fresh frames. ``parameters``: ``test_fraction`` and
    ``seed`` (the held-out share, drawn before any error is looked at), ``error_band`` [lower, upper] (eV/Å),
    ``convergence`` (the targets of :func:`~aiida_pfd.selection.is_converged`) and ``last`` (no iteration follows: the
    in-band frames of an unconverged last iteration are still trained on, once more, so that no DFT frame paid for
    is wasted; only the verdict says it is the last).

    Convergence is judged on the fresh frames that are not held out, unphysical ones included: the model has been
    trained on none of them. The held-out frames join the test set whatever their error. Returns the roles, the
    decision and the errors on both subsets.
    """
    arrays = {name: errors.get_array(name) for name in errors.get_arraynames()}
    n_frames = len(arrays['max_force_error'])
    held_out = held_out_indices(n_frames, parameters['test_fraction'], parameters['seed'])
    judged = [index for index in range(n_frames) if index not in held_out]
    judged_errors = subset_errors(arrays, judged)
    converged, reason = is_converged(judged_errors, parameters['convergence'])
    train_more = not converged

    lower, upper = parameters['error_band']
    groups = error_band_groups(arrays['max_force_error'][judged], lower, upper)
    roles = ['held_out'] * n_frames
    names = {'added': 'trained_on' if train_more else 'not_trained', 'accurate': 'accurate', 'unphysical': 'unphysical'}
    for group, positions in groups.items():
        for position in positions:
            roles[judged[position]] = names[group]
    return orm.Dict(
        {
            'roles': roles,
            'converged': converged,
            'train_more': train_more,
            'last': bool(parameters['last']),
            'reason': reason,
            'judged_on': f'{len(judged)} fresh frames not held out (unphysical included; none trained on)',
            'judged': judged_errors,
            'held_out': subset_errors(arrays, held_out),
            'held_out_indices': held_out,
            'counts': role_counts(roles),
            'seed': parameters['seed'],
        }
    )


@calcfunction
def build_ledger(table: orm.Dict, **frames: LabeledDataset) -> LabeledDataset:
    """Every DFT frame of a run in one dataset (frames in key order), with per-frame attributes ``frame_roles`` and
    ``frame_iterations`` and the count per role in ``role_counts``.

    ``table``: ``roles`` and ``iterations``, one entry per frame in the sorted order of the ``frames`` keys.
    """
    roles, iterations = table['roles'], table['iterations']
    if not len(roles) == len(iterations) == len(frames):
        raise ValueError(f'{len(frames)} frames for {len(roles)} roles and {len(iterations)} iterations.')
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValueError(f'unknown roles {unknown}; the roles are {ROLES}.')
    ledger = merged(frames)
    ledger.base.attributes.set('frame_roles', list(roles))
    ledger.base.attributes.set('frame_iterations', [int(i) for i in iterations])
    ledger.base.attributes.set('role_counts', role_counts(list(roles)))
    return ledger


def frames_with_role(ledger: LabeledDataset, *roles: str) -> list[int]:
    """Indices of the ledger's frames with one of ``roles``."""
    return [index for index, role in enumerate(ledger.base.attributes.get('frame_roles')) if role in roles]
