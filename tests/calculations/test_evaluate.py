"""``pfd.evaluate``: a real run with the tiny DeePMD model, cross-checked against the ASE DP calculator."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory
from ase.build import bulk

from aiida_pfd.data import LabeledDataset
from aiida_pfd.testing.models import emt_frames

EvaluateCalculation = CalculationFactory('pfd.evaluate')


def direct_errors(frames, model_file) -> dict:
    """Per-frame errors and metrics computed here, independently of the script, with the ASE DP calculator."""
    from deepmd.calculator import DP

    calculator = DP(model=str(model_file))
    natoms, e_ref, e_pred, max_df, rmse_df, dv, all_df = [], [], [], [], [], [], []
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = calculator
        n = len(atoms)
        df = atoms.get_forces() - frame.get_forces()
        virial_ref = -frame.get_stress(voigt=False) * frame.get_volume()
        virial_pred = -atoms.get_stress(voigt=False) * atoms.get_volume()
        natoms.append(n)
        e_ref.append(frame.get_potential_energy() / n)
        e_pred.append(atoms.get_potential_energy() / n)
        max_df.append(np.sqrt((df**2).sum(axis=1)).max())
        rmse_df.append(np.sqrt((df**2).mean()))
        dv.append(((virial_pred - virial_ref) / n).ravel())
        all_df.extend(df.ravel())
    de = np.array(e_pred) - np.array(e_ref)
    dv, all_df = np.array(dv), np.array(all_df)
    return {
        'arrays': {
            'natoms': np.array(natoms),
            'energy_per_atom_reference': np.array(e_ref),
            'energy_per_atom_predicted': np.array(e_pred),
            'energy_per_atom_error': de,
            'max_force_error': np.array(max_df),
            'force_rmse': np.array(rmse_df),
            'virial_per_atom_error': dv,
        },
        'metrics': {
            'energy_rmse_per_atom': np.sqrt((de**2).mean()),
            'energy_mae_per_atom': np.abs(de).mean(),
            'force_rmse': np.sqrt((all_df**2).mean()),
            'force_mae': np.abs(all_df).mean(),
            'max_force_error': max(max_df),
            'virial_rmse_per_atom': np.sqrt((dv**2).mean()),
            'virial_mae_per_atom': np.abs(dv).mean(),
            'n_frames': len(frames),
            'n_atoms': sum(natoms),
        },
    }


def test_evaluate_matches_a_direct_computation(aiida_profile_clean, python_code, tiny_model, tiny_model_files):
    frames = [*emt_frames('Cu', n_frames=3, seed=3), *emt_frames('Cu', n_frames=2, seed=4, size=(2, 1, 1))]
    reference = LabeledDataset.from_ase(frames, type_map=['Cu', 'Si']).store()
    assert reference.frames_per_system == [3, 2] and reference.has_virial

    results, node = run_get_node(EvaluateCalculation, code=python_code, model=tiny_model, reference=reference)

    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    expected = direct_errors(reference.to_ase(), tiny_model_files['frozen'])
    errors = results['errors']
    assert set(errors.get_arraynames()) == set(expected['arrays'])
    for name, array in expected['arrays'].items():
        np.testing.assert_allclose(errors.get_array(name), array, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(errors.get_array('natoms'), [4, 4, 4, 8, 8])

    metrics = results['metrics'].get_dict()
    units = metrics.pop('units')
    assert metrics.keys() == expected['metrics'].keys()
    for key, value in expected['metrics'].items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key
    assert units['energy_rmse_per_atom'] == 'eV/atom' and units['force_rmse'] == 'eV/Å'
    assert units['virial_rmse_per_atom'] == 'eV/atom'


def builder_for(code, model, reference):
    builder = EvaluateCalculation.get_builder()
    builder.code = code
    builder.model = model
    builder.reference = reference
    return builder


def test_reference_must_be_labelled(aiida_profile_clean, python_code, tiny_model):
    unlabelled = LabeledDataset.from_structures([orm.StructureData(ase=bulk('Cu', 'fcc', a=3.6))]).store()
    with pytest.raises(ValueError, match='`reference` is not labelled'):
        run_get_node(builder_for(python_code, tiny_model, unlabelled))


def test_reference_elements_in_the_type_map(aiida_profile_clean, python_code, tiny_model):
    reference = LabeledDataset.from_ase(emt_frames('Al', n_frames=1)).store()
    with pytest.raises(ValueError, match=r"lacks the elements \['Al'\] present in `reference`"):
        run_get_node(builder_for(python_code, tiny_model, reference))
