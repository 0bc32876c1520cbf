"""The structures a task group derives: supercells, vacancies, interstitials, strained cells; their validation."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.neighborlist import neighbor_list

from aiida_pfd.structures import (
    check_structure_keys,
    derived_structures,
    interstitial,
    largest_void,
    strain_label,
    strained,
    vacancy,
)

A0 = 5.43


@pytest.fixture
def diamond():
    return bulk('Si', 'diamond', a=A0, cubic=True)


def test_vacancy_removes_one_atom_and_leaves_four_dangling_neighbours(diamond):
    cell = diamond.repeat((2, 1, 1))
    defective = vacancy(cell)
    assert len(defective) == len(cell) - 1
    first, _ = neighbor_list('ij', defective, 2.5)
    coordination = np.bincount(first, minlength=len(defective))
    assert sorted(coordination)[:4] == [3, 3, 3, 3] and (coordination[coordination != 3] == 4).all()


def test_interstitial_goes_to_the_tetrahedral_site_of_diamond(diamond):
    from ase.geometry import get_distances

    _, distances = get_distances([largest_void(diamond)], diamond.positions, diamond.cell, pbc=True)
    assert distances.min() == pytest.approx(A0 * np.sqrt(3) / 4, abs=0.1)
    added = interstitial(diamond)
    assert len(added) == 9
    # the tetrahedral site is one bond length (a0 sqrt(3)/4) from its four nearest atoms
    first, d = neighbor_list('id', added, 2.5)
    near = np.sort(d[first == 8])
    assert len(near) == 4 and np.allclose(near, A0 * np.sqrt(3) / 4, atol=0.15)


def test_strained_scales_cell_and_positions(diamond):
    stretched = strained(diamond, 0.05)
    assert np.allclose(stretched.cell.lengths(), diamond.cell.lengths() * 1.05)
    assert np.allclose(stretched.get_scaled_positions(), diamond.get_scaled_positions())
    assert strain_label(-0.05) == 'strain_m5p0' and strain_label(0.025) == 'strain_p2p5'


def test_derived_structures_are_the_product_of_defects_and_strains(diamond):
    group = {'supercell': [2, 1, 1], 'defects': ['vacancy', 'interstitial'], 'strains': [-0.05, 0.05]}
    derived = derived_structures('si8', diamond, group)
    assert sorted(derived) == [
        'si8_x211_interstitial_strain_m5p0',
        'si8_x211_interstitial_strain_p5p0',
        'si8_x211_vacancy_strain_m5p0',
        'si8_x211_vacancy_strain_p5p0',
    ]
    assert len(derived['si8_x211_vacancy_strain_p5p0']) == 15
    assert len(derived['si8_x211_interstitial_strain_m5p0']) == 17
    assert derived_structures('si8', diamond, {'supercell': [2, 2, 2]})['si8_x222'].get_global_number_of_atoms() == 64


@pytest.mark.parametrize(
    ('group', 'fragment'),
    [
        ({'supercell': [2, 2]}, '`supercell`'),
        ({'supercell': [2, 0, 1]}, '`supercell`'),
        ({'defects': ['antisite']}, '`defects`'),
        ({'defects': []}, '`defects`'),
        ({'strains': [0.7]}, '`strains`'),
        ({'strains': 0.05}, '`strains`'),
    ],
)
def test_bad_structure_keys_are_named(group, fragment):
    assert fragment in check_structure_keys(group)


def test_good_structure_keys_pass():
    assert check_structure_keys({'supercell': [2, 2, 2], 'defects': ['vacancy'], 'strains': [-0.05, 0.0]}) is None


def test_generate_structures_records_provenance(aiida_profile_clean, diamond):
    from aiida import orm

    from aiida_pfd.structures import generate_structures

    structure = orm.StructureData(ase=diamond)
    outputs = generate_structures(structure, orm.Dict({'name': 'si8', 'defects': ['vacancy']}))
    node = outputs['si8_vacancy']
    assert len(node.sites) == 7
    creator = node.base.links.get_incoming().one().node
    assert creator.base.links.get_incoming().get_node_by_label('structure').uuid == structure.uuid
