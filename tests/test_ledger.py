"""The DFT ledger's role decisions: held-out shares, error-band branches, convergence on the judged frames only."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm

from aiida_pfd.data import LabeledDataset
from aiida_pfd.ledger import assess_iteration, assign_initial_roles, build_ledger, held_out_indices, subset_errors
from aiida_pfd.seeds import derive_seed


def test_derived_seeds_are_reproducible_and_distinct():
    assert derive_seed(0, 'md', 1, 0) == derive_seed(0, 'md', 1, 0)
    seeds = {
        derive_seed(0, 'md', 1, 0),
        derive_seed(0, 'md', 1, 1),
        derive_seed(0, 'md', 2, 0),
        derive_seed(1, 'md', 1, 0),
    }
    assert len(seeds) == 4 and all(0 <= seed < 2**31 for seed in seeds)


@pytest.mark.parametrize(
    ('n_frames', 'fraction', 'count'), [(1, 0.3, 0), (2, 0.3, 1), (3, 0.3, 1), (10, 0.4, 4), (8, 0.4, 4), (4, 0.9, 3)]
)
def test_held_out_share_is_rounded_up_and_leaves_a_frame(n_frames, fraction, count):
    chosen = held_out_indices(n_frames, fraction, seed=7)
    assert len(chosen) == count and chosen == sorted(set(chosen)) and all(0 <= i < n_frames for i in chosen)
    assert chosen == held_out_indices(n_frames, fraction, seed=7)


def errors_node(max_force_error, force_rmse, energy_error, natoms=8):
    node = orm.ArrayData()
    n = len(max_force_error)
    node.set_array('natoms', np.full(n, natoms))
    node.set_array('max_force_error', np.asarray(max_force_error, dtype=float))
    node.set_array('force_rmse', np.asarray(force_rmse, dtype=float))
    node.set_array('energy_per_atom_error', np.asarray(energy_error, dtype=float))
    return node.store()


def parameters(last=False, seed=3, band=(0.1, 1.0), target=0.05):
    return orm.Dict(
        {
            'test_fraction': 0.25,
            'seed': seed,
            'error_band': list(band),
            'convergence': {'force_rmse': target, 'energy_rmse': 0.01},
            'last': last,
        }
    )


def test_initial_roles(aiida_profile_clean):
    result = assign_initial_roles(orm.Dict({'n_frames': 6, 'test_fraction': 0.3, 'seed': 1})).get_dict()
    assert result['roles'].count('held_out') == 2 and result['roles'].count('initial') == 4
    assert [i for i, role in enumerate(result['roles']) if role == 'held_out'] == result['held_out_indices']


def test_both_band_branches_and_convergence_judged_without_held_out_frames(aiida_profile_clean):
    held_out = held_out_indices(8, 0.25, seed=3)
    judged = [i for i in range(8) if i not in held_out]
    # Judged frames: two accurate, two in the band, two unphysical; held-out frames get a huge error that must
    # neither count for convergence nor change their role.
    max_error = np.zeros(8)
    max_error[judged] = [0.01, 0.02, 0.3, 0.5, 2.0, np.nan]
    max_error[held_out] = 100.0
    force_rmse = np.where(np.isin(np.arange(8), held_out), 50.0, 0.02)
    errors = errors_node(max_error, force_rmse, np.full(8, 0.001))

    result = assess_iteration(errors, parameters()).get_dict()

    roles = result['roles']
    assert [roles[i] for i in held_out] == ['held_out', 'held_out']
    assert [roles[i] for i in judged] == [
        'accurate',
        'accurate',
        'not_trained',  # in the band, but converged: nothing more is trained on
        'not_trained',
        'unphysical',
        'unphysical',
    ]
    assert result['converged'] and result['judged'] == pytest.approx(
        {'n_frames': 6, 'force_rmse': 0.02, 'energy_rmse_per_atom': 0.001}
    )
    assert result['held_out']['force_rmse'] == pytest.approx(50.0)
    assert not result['train_more']
    assert result['counts'] == {'held_out': 2, 'accurate': 2, 'not_trained': 2, 'unphysical': 2}


def test_not_converged_adds_in_band_frames_after_the_last_iteration_too(aiida_profile_clean):
    errors = errors_node(np.full(8, 0.5), np.full(8, 0.2), np.full(8, 0.001))
    going_on = assess_iteration(errors, parameters(last=False)).get_dict()
    assert not going_on['converged'] and going_on['train_more'] and not going_on['last']
    assert going_on['counts'] == {'held_out': 2, 'trained_on': 6}
    last = assess_iteration(errors, parameters(last=True)).get_dict()
    assert last['train_more'] and last['last'] and last['counts'] == {'held_out': 2, 'trained_on': 6}


def test_subset_errors_weight_frames_by_atoms():
    arrays = {
        'natoms': np.array([2, 6]),
        'force_rmse': np.array([1.0, 0.0]),
        'energy_per_atom_error': np.array([0.3, 0.4]),
    }
    result = subset_errors(arrays, [0, 1])
    assert result['force_rmse'] == pytest.approx(np.sqrt(2 / 8))
    assert result['energy_rmse_per_atom'] == pytest.approx(np.sqrt((0.09 + 0.16) / 2))
    assert subset_errors(arrays, [])['n_frames'] == 0


def test_ledger_keeps_every_frame_with_its_role(aiida_profile_clean, emt_dataset):
    from aiida_pfd.data.operations import subset_dataset

    frames = {f'frame_{i:05d}': subset_dataset(emt_dataset, orm.List([i])) for i in range(3)}
    table = orm.Dict({'roles': ['initial', 'held_out', 'unphysical'], 'iterations': [0, 0, 1]})
    ledger = build_ledger(table, **frames)
    assert isinstance(ledger, LabeledDataset) and ledger.n_frames == 3
    assert ledger.base.attributes.get('frame_roles') == ['initial', 'held_out', 'unphysical']
    assert ledger.base.attributes.get('role_counts') == {'initial': 1, 'held_out': 1, 'unphysical': 1}
    np.testing.assert_allclose(
        [atoms.get_potential_energy() for atoms in ledger.to_ase()],
        [atoms.get_potential_energy() for atoms in emt_dataset.to_ase()[:3]],
    )
    with pytest.raises(ValueError, match='unknown roles'):
        build_ledger(orm.Dict({'roles': ['initial', 'lost', 'held_out'], 'iterations': [0, 0, 0]}), **frames)
