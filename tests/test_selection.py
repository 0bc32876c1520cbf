"""Frame generation and the selection filters of the fine-tuning loop, and its convergence rule."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from ase import Atoms
from ase.build import bulk

from aiida_pfd.data import LabeledDataset
from aiida_pfd.selection import (
    error_band_groups,
    is_converged,
    min_interatomic_distance,
    perturb_structure,
    select_by_error,
    select_candidates,
)
from aiida_pfd.testing.models import emt_frames


@pytest.fixture
def diamond():
    return orm.StructureData(ase=bulk('Si', 'diamond', a=5.43, cubic=True))


def test_perturbation_is_seeded_bounded_and_recorded(aiida_profile_clean, diamond):
    parameters = orm.Dict({'frames': 4, 'cell_fraction': 0.02, 'atom_displacement': 0.1, 'seed': 3})
    frames = perturb_structure(diamond, parameters)
    assert (frames.n_frames, frames.has_energy) == (4, False)
    assert frames.creator.process_label == 'perturb_structure'
    reference = diamond.get_ase()
    for atoms in frames.to_ase():
        strain = np.abs(np.linalg.solve(reference.cell[:], atoms.cell[:]) - np.eye(3)).max()
        assert 0 < strain <= 0.02 + 1e-9
    again = perturb_structure(diamond, parameters)
    np.testing.assert_allclose(again.to_ase()[2].positions, frames.to_ase()[2].positions)


def test_perturbation_supercell(aiida_profile_clean, diamond):
    frames = perturb_structure(diamond, orm.Dict({'frames': 2, 'supercell': [2, 1, 1]}))
    assert frames.base.attributes.get('n_atoms') == [16]


def test_min_distance():
    pair = Atoms('Si2', positions=[[0, 0, 0], [1.5, 0, 0]], cell=[10, 10, 10], pbc=True)
    assert min_interatomic_distance(pair) == pytest.approx(1.5)
    wrapped = Atoms('Si2', positions=[[0.2, 0, 0], [9.9, 0, 0]], cell=[10, 10, 10], pbc=True)
    assert min_interatomic_distance(wrapped) == pytest.approx(0.3)
    assert min_interatomic_distance(bulk('Cu', 'fcc', a=3.6)) == pytest.approx(3.6 / np.sqrt(2))


def test_candidates_drop_unphysical_frames_and_keep_at_most_max(aiida_profile_clean):
    frames = [bulk('Si', 'diamond', a=5.43, cubic=True) for _ in range(5)]
    frames[1].positions[1] = frames[1].positions[0] + [0.6, 0, 0]  # two atoms 0.6 Å apart
    frames[3].positions[2] = frames[3].positions[0] + [0.8, 0, 0]
    candidates = LabeledDataset.from_ase(frames).store()
    outputs = select_candidates(candidates, orm.Dict({'max_frames': 2, 'min_distance': 1.5, 'seed': 1}))
    report = outputs['report'].get_dict()
    assert (report['n_unphysical'], report['n_selected']) == (2, 2)
    assert set(report['selected_indices']) <= {0, 2, 4}
    assert not outputs['selected'].has_energy


def test_candidates_strip_model_labels(aiida_profile_clean):
    candidates = LabeledDataset.from_ase(emt_frames('Cu', 3)).store()
    selected = select_candidates(candidates, orm.Dict({'max_frames': 5, 'min_distance': 1.0}))['selected']
    assert selected.n_frames == 3
    assert not selected.has_energy and not selected.has_virial


def test_no_candidate_left_gives_only_a_report(aiida_profile_clean):
    squeezed = Atoms('Si2', positions=[[0, 0, 0], [0.5, 0, 0]], cell=[5, 5, 5], pbc=True)
    outputs = select_candidates(LabeledDataset.from_ase([squeezed]).store(), orm.Dict({'min_distance': 1.0}))
    assert 'selected' not in outputs
    assert outputs['report']['n_selected'] == 0


def test_unknown_diversity_is_rejected(aiida_profile_clean):
    candidates = LabeledDataset.from_ase(emt_frames('Cu', 2)).store()
    with pytest.raises(ValueError, match='diversity must be one of'):
        select_candidates(candidates, orm.Dict({'diversity': 'farthest'}))


def test_entropy_selection_prefers_new_environments(aiida_profile_clean):
    """Against a reference of near-perfect fcc cells, the strongly distorted frames carry the new information."""
    reference = LabeledDataset.from_ase(emt_frames('Cu', 3, rattle=0.01, seed=1)).store()
    calm = emt_frames('Cu', 3, rattle=0.01, seed=2)
    wild = emt_frames('Cu', 2, rattle=0.25, seed=3)
    candidates = LabeledDataset.from_ase([calm[0], wild[0], calm[1], wild[1], calm[2]]).store()
    outputs = select_candidates(candidates, orm.Dict({'max_frames': 2, 'diversity': 'entropy'}), training=reference)
    assert outputs['report']['selected_indices'] == [1, 3]


def test_error_band(aiida_profile_clean):
    dataset = LabeledDataset.from_ase(emt_frames('Cu', 5)).store()
    errors = orm.ArrayData({'max_force_error': np.array([0.01, 0.2, 0.5, 3.0, 0.1])})
    outputs = select_by_error(dataset, errors, orm.Dict({'lower': 0.1, 'upper': 1.0}))
    report = outputs['report'].get_dict()
    assert report['added_indices'] == [1, 2, 4]
    assert report['accurate_indices'] == [0]
    assert report['unphysical_indices'] == [3]
    assert outputs['added'].n_frames == 3
    np.testing.assert_allclose(
        outputs['unphysical'].to_ase()[0].get_forces(), dataset.to_ase()[3].get_forces(), atol=1e-10
    )


def test_error_band_needs_one_error_per_frame(aiida_profile_clean):
    dataset = LabeledDataset.from_ase(emt_frames('Cu', 2)).store()
    with pytest.raises(ValueError, match='1 force errors for a dataset of 2 frames'):
        select_by_error(
            dataset, orm.ArrayData({'max_force_error': np.array([0.1])}), orm.Dict({'lower': 0, 'upper': 1})
        )


@pytest.mark.parametrize(
    ('metrics', 'targets', 'expected'),
    [
        ({'force_rmse': 0.05, 'energy_rmse_per_atom': 0.002}, {'force_rmse': 0.06, 'energy_rmse': 0.003}, True),
        ({'force_rmse': 0.07, 'energy_rmse_per_atom': 0.002}, {'force_rmse': 0.06, 'energy_rmse': 0.003}, False),
        ({'force_rmse': 0.05, 'energy_rmse_per_atom': 0.004}, {'force_rmse': 0.06, 'energy_rmse': 0.003}, False),
        ({'force_rmse': 0.05, 'energy_rmse_per_atom': 0.004}, {'force_rmse': 0.06}, True),
        ({'force_rmse': float('nan'), 'energy_rmse_per_atom': 0.0}, {'force_rmse': 0.06}, False),
    ],
)
def test_convergence_decision(metrics, targets, expected):
    converged, reason = is_converged(metrics, targets)
    assert converged is expected
    assert 'force_rmse' in reason


def test_non_finite_force_error_counts_as_unphysical():
    groups = error_band_groups(np.array([0.5, np.nan, 0.01]), 0.1, 1.0)
    assert {name: list(indices) for name, indices in groups.items()} == {
        'added': [0],
        'accurate': [2],
        'unphysical': [1],
    }
