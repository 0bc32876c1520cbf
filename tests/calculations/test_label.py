"""``pfd.label``: real runs of the label script with the tiny DeePMD model, and input validation."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory

from aiida_pfd.data import LabeledDataset
from aiida_pfd.testing.models import emt_frames

LabelCalculation = CalculationFactory('pfd.label')


def cu3si_frames(n_frames: int, seed: int):
    """Rattled Cu4 cells with the second atom made Si (unlabelled)."""
    frames = []
    for atoms in emt_frames('Cu', n_frames=n_frames, seed=seed):
        atoms = atoms.copy()  # drops the EMT labels
        atoms[1].symbol = 'Si'
        frames.append(atoms)
    return frames


def direct_labels(frames, model_file, head=None):
    """Energy, forces and virial (``-stress * volume``, or None without 3D periodicity) from the ASE DP calculator."""
    from deepmd.calculator import DP

    calculator = DP(model=str(model_file), **({'head': head} if head else {}))
    labels = []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = calculator
        virial = -atoms.get_stress(voigt=False) * atoms.get_volume() if atoms.pbc.all() else None
        labels.append((atoms.get_potential_energy(), atoms.get_forces(), virial))
    return labels


def assert_labelled_like(output: LabeledDataset, frames, model_file, head=None):
    """``output`` holds ``frames`` in order, atoms in order, with the labels of a direct DP calculator call."""
    labelled = output.to_ase()
    assert len(labelled) == len(frames)
    for atoms, original, (energy, forces, virial) in zip(labelled, frames, direct_labels(frames, model_file, head)):
        assert atoms.get_chemical_symbols() == original.get_chemical_symbols()
        np.testing.assert_allclose(atoms.positions, original.positions, atol=1e-10)
        np.testing.assert_allclose(atoms.get_potential_energy(), energy, atol=1e-6)
        np.testing.assert_allclose(atoms.get_forces(), forces, atol=1e-6)
        if virial is not None:
            np.testing.assert_allclose(-atoms.get_stress(voigt=False) * atoms.get_volume(), virial, atol=1e-6)


def test_label_a_two_system_dataset(aiida_profile_clean, python_code, tiny_model, tiny_model_files):
    frames = [*cu3si_frames(2, seed=7), *(a.copy() for a in emt_frames('Cu', n_frames=2, seed=8))]
    dataset = LabeledDataset.from_ase(frames, type_map=['Si', 'Cu']).store()
    assert dataset.base.attributes.get('n_systems') == 2 and not dataset.is_labelled

    results, node = run_get_node(LabelCalculation, code=python_code, model=tiny_model, dataset=dataset)

    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    output = results['dataset']
    assert output.type_map == ['Cu', 'Si']  # the model's
    assert output.n_frames == 4 and output.is_labelled and output.has_virial
    assert output.frames_per_system == [2, 2]
    assert_labelled_like(output, dataset.to_ase(), tiny_model_files['frozen'])


def test_label_a_labelled_dataset_replaces_its_labels(aiida_profile_clean, python_code, tiny_model, emt_dataset):
    results, node = run_get_node(LabelCalculation, code=python_code, model=tiny_model, dataset=emt_dataset)

    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    reference = emt_dataset.to_ase()
    labelled = results['dataset'].to_ase()
    assert len(labelled) == 8
    assert not np.allclose([a.get_potential_energy() for a in labelled], [a.get_potential_energy() for a in reference])


def test_label_structures_in_natural_key_order(aiida_profile_clean, python_code, tiny_model, tiny_model_files):
    cu = emt_frames('Cu', n_frames=3, seed=9)
    cluster = cu[2].copy()
    cluster.pbc = False  # no virial for a non-periodic frame
    frames = {'s0': cu[0].copy(), 's1': cu3si_frames(1, seed=10)[0], 's2': cu[1].copy(), 's10': cluster}
    structures = {key: orm.StructureData(ase=atoms) for key, atoms in frames.items()}

    results, node = run_get_node(LabelCalculation, code=python_code, model=tiny_model, structures=structures)

    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    output = results['dataset']
    assert output.n_frames == 4 and output.frames_per_system == [1, 1, 1, 1]
    assert not output.has_virial  # one frame is not periodic
    ordered = [structures[key].get_ase() for key in ('s0', 's1', 's2', 's10')]
    assert_labelled_like(output, ordered, tiny_model_files['frozen'])


def test_label_with_a_multitask_checkpoint_head(
    aiida_profile_clean, python_code, multitask_checkpoint, multitask_checkpoint_file
):
    frames = {'a': emt_frames('Cu', n_frames=1, seed=11)[0].copy(), 'b': cu3si_frames(1, seed=12)[0]}
    structures = {key: orm.StructureData(ase=atoms) for key, atoms in frames.items()}
    builder = builder_for(python_code, multitask_checkpoint, structures=structures, model_head=orm.Str('EMT_Cu'))

    results, node = run_get_node(builder)

    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert results['dataset'].type_map == ['Al', 'Cu', 'Si']
    ordered = [structures[key].get_ase() for key in ('a', 'b')]
    assert_labelled_like(results['dataset'], ordered, multitask_checkpoint_file, head='EMT_Cu')


def builder_for(code, model, **inputs):
    builder = LabelCalculation.get_builder()
    builder.code = code
    builder.model = model
    for key, value in inputs.items():
        setattr(builder, key, value)
    return builder


@pytest.mark.parametrize(
    ('frames', 'message'),
    [
        ('both', 'give either `dataset` or `structures`, not both'),
        ('none', 'give the frames to label: either `dataset` or `structures`'),
    ],
)
def test_dataset_or_structures(aiida_profile_clean, python_code, tiny_model, emt_dataset, frames, message):
    inputs = {}
    if frames == 'both':
        inputs = {'dataset': emt_dataset, 'structures': {'a': orm.StructureData(ase=emt_dataset.to_ase()[0])}}
    with pytest.raises(ValueError, match=message):
        run_get_node(builder_for(python_code, tiny_model, **inputs))


def test_elements_missing_from_the_type_map(aiida_profile_clean, python_code, tiny_model):
    from ase.build import bulk

    structures = {'al': orm.StructureData(ase=bulk('Al', 'fcc', a=4.05)), 'cu': orm.StructureData(ase=bulk('Cu'))}
    with pytest.raises(ValueError, match=r'lacks the elements Al \(in al\) present in `structures`'):
        run_get_node(builder_for(python_code, tiny_model, structures=structures))


def test_model_head(aiida_profile_clean, python_code, tiny_model, multitask_checkpoint, emt_dataset):
    with pytest.raises(ValueError, match='`model_head` is `main` but `model` has no heads'):
        run_get_node(builder_for(python_code, tiny_model, dataset=emt_dataset, model_head=orm.Str('main')))

    multitask = multitask_checkpoint
    with pytest.raises(ValueError, match=r"multi-task checkpoint: set `model_head` to one of its heads \['EMT_Al'"):
        run_get_node(builder_for(python_code, multitask, dataset=emt_dataset))
    with pytest.raises(ValueError, match='`model_head` `EMT_Si` is not a head of `model`'):
        run_get_node(builder_for(python_code, multitask, dataset=emt_dataset, model_head=orm.Str('EMT_Si')))
