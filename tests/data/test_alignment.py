"""Energy-zero alignment of a foundation: the per-element least-squares fit and the shifted SevenNet checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_pfd.data import LabeledDataset, ModelData
from aiida_pfd.data.alignment import composition_matrix, fit_energy_offsets, fit_offsets, shift_model_energy


def labelled(atoms: Atoms, energy: float) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((len(atoms), 3)))
    return atoms


def test_fit_recovers_per_element_offsets():
    counts = np.array([[2, 0], [1, 1], [3, 1], [0, 4]], dtype=float)
    truth = np.array([-130.0, -7.5])
    assert np.allclose(fit_offsets(counts, counts @ truth), truth)


@pytest.mark.usefixtures('aiida_profile_clean')
def test_fit_energy_offsets_from_evaluation_errors():
    frames = [
        labelled(bulk('NaCl', 'rocksalt', a=5.6), -10.0),
        labelled(bulk('Na', 'bcc', a=4.2), -2.0),
        labelled(bulk('NaCl', 'rocksalt', a=5.7).repeat((2, 1, 1)), -20.5),
    ]
    dataset = LabeledDataset.from_ase(frames, type_map=['Cl', 'Na', 'Si']).store()
    matrix, elements = composition_matrix(dataset)
    assert elements == ['Cl', 'Na']
    offsets = {'Cl': -3.0, 'Na': 1.5}
    natoms = matrix.sum(axis=1)
    errors = orm.ArrayData()
    errors.set_array('natoms', natoms.astype(int))
    errors.set_array('energy_per_atom_error', -(matrix @ [offsets['Cl'], offsets['Na']]) / natoms)  # predicted - ref

    fit = fit_energy_offsets(errors, dataset)

    assert fit['offsets'] == pytest.approx(offsets)
    assert fit['residual_energy_rmse_per_atom'] == pytest.approx(0.0, abs=1e-9)
    assert fit['n_frames'] == 3


@pytest.mark.usefixtures('aiida_profile_clean')
def test_shifted_sevennet_moves_energies_not_forces():
    foundation = ModelData.from_shipped('sevennet-0').store()
    shifted = shift_model_energy(foundation, orm.Dict({'offsets': {'Si': -133.25}}))

    assert shifted.model_backend == 'sevenn' and shifted.kind == 'checkpoint'
    assert shifted.sha256 != foundation.sha256
    assert shifted.base.links.get_incoming().first().node.process_label == 'shift_model_energy'
    atoms = bulk('Si', 'diamond', a=5.43, cubic=True)
    atoms.rattle(0.05, seed=1)
    results = []
    for model in (foundation, shifted):
        frame = atoms.copy()
        frame.calc = model.get_calculator(device='cpu')
        results.append((frame.get_potential_energy(), frame.get_forces()))
    assert results[1][0] - results[0][0] == pytest.approx(-133.25 * len(atoms), abs=1e-3)
    assert np.allclose(results[1][1], results[0][1], atol=1e-5)


@pytest.mark.usefixtures('aiida_profile_clean')
def test_shifted_deepmd_checkpoint_moves_energies_not_forces(tiny_checkpoint):
    """A single-task DeePMD checkpoint's output bias takes the offset of each type; the other types keep theirs."""
    shifted = shift_model_energy(tiny_checkpoint, orm.Dict({'offsets': {'Cu': -2.5}}))

    assert shifted.model_backend == 'deepmd' and shifted.kind == 'checkpoint'
    assert shifted.type_map == tiny_checkpoint.type_map
    atoms = bulk('Cu', 'fcc', a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    alloy = atoms.copy()
    alloy.symbols[0] = 'Si'
    results = {}
    for name, model in (('foundation', tiny_checkpoint), ('shifted', shifted)):
        calculator = model.get_calculator()
        for label, frame in (('cu', atoms.copy()), ('cusi', alloy.copy())):
            frame.calc = calculator
            results[name, label] = (frame.get_potential_energy(), frame.get_forces())
    for label, n_cu in (('cu', 4), ('cusi', 3)):
        energy_shift = results['shifted', label][0] - results['foundation', label][0]
        assert energy_shift == pytest.approx(-2.5 * n_cu, abs=1e-6)
        assert np.allclose(results['shifted', label][1], results['foundation', label][1], atol=1e-8)


@pytest.mark.usefixtures('aiida_profile_clean')
def test_shift_rejects_unknown_elements_and_models_it_cannot_shift(tiny_model, tiny_checkpoint, multitask_checkpoint):
    foundation = ModelData.from_shipped('sevennet-0').store()
    with pytest.raises(ValueError, match='no species'):
        shift_model_energy(foundation, orm.Dict({'offsets': {'Xx': 1.0}}))
    with pytest.raises(ValueError, match='no type'):
        shift_model_energy(tiny_checkpoint, orm.Dict({'offsets': {'Xx': 1.0}}))
    with pytest.raises(ValueError, match='not a frozen model'):
        shift_model_energy(tiny_model, orm.Dict({'offsets': {'Cu': 1.0}}))
    with pytest.raises(ValueError, match='multi-task'):
        shift_model_energy(multitask_checkpoint, orm.Dict({'offsets': {'Cu': 1.0}}))
