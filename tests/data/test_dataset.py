"""``pfd.dataset``: constructors, exporters, attributes, and the provenance-recording operations."""

from __future__ import annotations

import io
import pathlib

import dpdata
import numpy as np
import pytest
from aiida import orm
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read

from aiida_pfd.data import LabeledDataset
from aiida_pfd.data.operations import merge_datasets, split_dataset, subset_dataset
from aiida_pfd.testing.models import emt_frames

SHARED = pathlib.Path(__file__).resolve().parents[2].parent / 'shared'
PAPER_SI = SHARED / 'data' / 'pfd-paper' / 'Si_train.extxyz'
QE_SI = SHARED / 'data' / 'si-qe-workshop'
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason='../shared (reference datasets) is absent')


def mixed_frames(n_frames=4, seed=0):
    """EMT-labelled Cu-Al cells whose atoms are not sorted by element."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n_frames):
        atoms = bulk('Cu', 'fcc', a=3.7, cubic=True)
        atoms.symbols[1] = 'Al'
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        atoms.calc = EMT()
        atoms.get_potential_energy()
        frames.append(atoms)
    return frames


def assert_frames_equal(left, right, atol=1e-8):
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        np.testing.assert_allclose(a.positions, b.positions, atol=atol)
        np.testing.assert_allclose(a.cell[:], b.cell[:], atol=atol)
        np.testing.assert_allclose(a.get_potential_energy(), b.get_potential_energy(), atol=atol)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=atol)


def test_extxyz_round_trip_keeps_values_and_atom_order(aiida_profile_clean, tmp_path):
    source = tmp_path / 'in.extxyz'
    from ase.io import write

    write(source, mixed_frames() + emt_frames('Cu', n_frames=3), format='extxyz')
    dataset = LabeledDataset.from_extxyz(source).store()
    assert dataset.n_frames == 7
    assert dataset.type_map == ['Al', 'Cu']
    assert dataset.base.attributes.get('formulae') == ['AlCu3', 'Cu4']
    assert dataset.has_virial is True  # EMT gives stress

    target = tmp_path / 'out.extxyz'
    dataset.to_extxyz(target)
    assert_frames_equal(read(source, ':'), read(target, ':'))
    assert_frames_equal(read(source, ':'), read(io.StringIO(dataset.to_extxyz()), ':', format='extxyz'))


def test_stress_survives_as_virial(aiida_profile_clean):
    frames = emt_frames('Cu', n_frames=2)
    dataset = LabeledDataset.from_ase(frames)
    system = dataset.to_dpdata()[0]
    expected = -frames[0].get_volume() * frames[0].get_stress(voigt=False)
    np.testing.assert_allclose(system['virials'][0], expected, atol=1e-8)
    np.testing.assert_allclose(dataset.to_ase()[0].get_stress(), frames[0].get_stress(), atol=1e-8)


def test_unlabelled_frames_from_structures(aiida_profile_clean):
    structures = [orm.StructureData(ase=bulk('Si', 'diamond', a=a)) for a in (5.40, 5.45)]
    dataset = LabeledDataset.from_structures(structures).store()
    assert (dataset.n_frames, dataset.has_energy, dataset.has_forces, dataset.has_virial) == (2, False, False, False)
    assert dataset.elements == ['Si']
    np.testing.assert_allclose(dataset.to_ase()[1].cell[:], structures[1].get_ase().cell[:], atol=1e-10)


def test_labelled_frames_from_trajectory(aiida_profile_clean):
    frames = emt_frames('Cu', n_frames=3)
    trajectory = orm.TrajectoryData([orm.StructureData(ase=atoms) for atoms in frames])
    trajectory.set_array('energy', np.array([atoms.get_potential_energy() for atoms in frames]))
    trajectory.set_array('forces', np.array([atoms.get_forces() for atoms in frames]))
    dataset = LabeledDataset.from_trajectory(trajectory)
    assert dataset.is_labelled and not dataset.has_virial
    np.testing.assert_allclose(dataset.to_ase()[2].get_forces(), frames[2].get_forces(), atol=1e-8)


def test_from_dpdata_and_deepmd_npy_export(aiida_profile_clean, tmp_path):
    systems = dpdata.MultiSystems(*(dpdata.LabeledSystem(a, fmt='ase/structure') for a in emt_frames('Cu', 3)))
    dataset = LabeledDataset.from_dpdata(systems, type_map=['Cu', 'Si']).store()
    folders = dataset.export_deepmd_npy(tmp_path / 'npy')
    assert [f.name for f in folders] == ['sys.000']
    assert (folders[0] / 'type_map.raw').read_text().split() == ['Cu', 'Si']
    reloaded = dpdata.LabeledSystem(str(folders[0]), fmt='deepmd/npy')
    assert reloaded.get_nframes() == 3
    again = LabeledDataset.from_deepmd_npy(tmp_path / 'npy')
    assert (again.type_map, again.n_frames) == (['Cu'], 3)


def test_type_map_must_cover_the_frames(aiida_profile_clean):
    with pytest.raises(ValueError, match=r"lacks the elements \['Al'\]"):
        LabeledDataset.from_ase(mixed_frames(1), type_map=['Cu'])


def test_labelled_and_unlabelled_frames_do_not_mix(aiida_profile_clean):
    unlabelled = bulk('Cu', 'fcc', a=3.6, cubic=True)
    with pytest.raises(ValueError, match='labelled, or none'):
        LabeledDataset.from_ase([*emt_frames('Cu', 1), unlabelled])
    with pytest.raises(ValueError, match='no frames'):
        LabeledDataset.from_ase([])


def test_split_is_seeded_disjoint_and_recorded(aiida_profile_clean):
    dataset = LabeledDataset.from_ase(mixed_frames(6) + emt_frames('Cu', 14)).store()
    parts = split_dataset(dataset, orm.Float(0.25), orm.Int(7))
    train, test = parts['train'], parts['test']
    assert (train.n_frames, test.n_frames) == (15, 5)
    energies = lambda d: sorted(round(a.get_potential_energy(), 8) for a in d.to_ase())  # noqa: E731
    assert sorted(energies(train) + energies(test)) == energies(dataset)
    assert not set(energies(train)) & set(energies(test))
    again = split_dataset(dataset, orm.Float(0.25), orm.Int(7))
    assert energies(again['test']) == energies(test)
    creator = test.creator
    assert creator.process_label == 'split_dataset'
    assert creator.base.links.get_incoming().get_node_by_label('dataset').pk == dataset.pk


@pytest.mark.parametrize('fraction', [0.0, 1.0, 0.001])
def test_split_rejects_fractions_that_leave_a_side_empty(aiida_profile_clean, fraction):
    dataset = LabeledDataset.from_ase(emt_frames('Cu', 4)).store()
    with pytest.raises(ValueError, match=r'test_fraction|one side empty'):
        split_dataset(dataset, orm.Float(fraction), orm.Int(0))


def test_merge_and_subset(aiida_profile_clean):
    copper = LabeledDataset.from_ase(emt_frames('Cu', 3)).store()
    alloy = LabeledDataset.from_ase(mixed_frames(2)).store()
    merged = merge_datasets(a=copper, b=alloy)
    assert merged.n_frames == 5
    assert merged.type_map == ['Cu', 'Al']
    assert merged.elements == ['Cu', 'Al']

    subset = subset_dataset(merged, orm.List([4, 0]))
    assert subset.n_frames == 2
    expected = [merged.to_ase()[i].get_potential_energy() for i in (0, 4)]
    np.testing.assert_allclose([a.get_potential_energy() for a in subset.to_ase()], expected, atol=1e-10)
    with pytest.raises(ValueError, match='frame indices'):
        subset_dataset(merged, orm.List([5]))


def test_query_datasets_by_element_and_size(aiida_profile_clean):
    si = LabeledDataset.from_structures([orm.StructureData(ase=bulk('Si', 'diamond', a=5.43))] * 6).store()
    LabeledDataset.from_structures([orm.StructureData(ase=bulk('Si', 'diamond', a=5.43))] * 2).store()
    LabeledDataset.from_ase(emt_frames('Cu', 8)).store()
    query = orm.QueryBuilder().append(
        LabeledDataset,
        filters={'attributes.elements': {'contains': ['Si']}, 'attributes.n_frames': {'>': 4}},
        project='id',
    )
    assert query.all(flat=True) == [si.pk]


@needs_shared
def test_paper_si_dataset(aiida_profile_clean):
    dataset = LabeledDataset.from_extxyz(PAPER_SI).store()
    assert dataset.n_frames == 515
    assert dataset.elements == ['Si']
    assert dataset.is_labelled and not dataset.has_virial
    assert sorted(set(dataset.base.attributes.get('n_atoms'))) == [2, 4, 8, 16, 31, 32, 64]


@needs_shared
def test_qe_si_dataset(aiida_profile_clean):
    dataset = LabeledDataset.from_deepmd_npy(QE_SI).store()
    assert dataset.n_frames == 573
    assert dataset.has_virial
    assert set(dataset.base.attributes.get('n_atoms')) == {64}
