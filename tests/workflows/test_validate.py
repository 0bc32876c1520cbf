"""``pfd.validate``: crystal properties with real models and the same formulas on reference frames (EMT as the DFT)."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_pfd.properties import (
    CATEGORIES,
    elastic_constants,
    elastic_structures,
    eos_structures,
    equation_of_state,
    reference_properties,
    vacancy_formation_energy,
    vacancy_structures,
)

ValidationWorkChain = WorkflowFactory('pfd.validate')
A_CU = 3.6
THREADS = {'OMP_NUM_THREADS': '1', 'DP_INTRA_OP_PARALLELISM_THREADS': '1', 'DP_INTER_OP_PARALLELISM_THREADS': '1'}


def emt_labelled(structures):
    out = []
    for atoms in structures:
        atoms = atoms.copy()
        atoms.calc = EMT()
        results = {'energy': atoms.get_potential_energy(), 'forces': atoms.get_forces(), 'stress': atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        out.append(atoms)
    return out


def test_the_formulas_agree_with_each_other_on_emt_copper():
    cubic = bulk('Cu', 'fcc', a=A_CU, cubic=True)
    eos = equation_of_state(emt_labelled(eos_structures(cubic)), A_CU)
    elastic = elastic_constants(emt_labelled(elastic_structures(cubic)))
    assert eos['a0'] == pytest.approx(3.59, abs=0.02)  # EMT copper
    # the bulk modulus of the EOS and of the elastic constants agree (a0 is 0.3 % off the strained cell's)
    assert (elastic['c11'] + 2 * elastic['c12']) / 3 == pytest.approx(eos['b0'], rel=0.1)
    assert elastic['c11'] > elastic['c12'] > 0 and elastic['c44_unrelaxed'] > 0
    perfect, vacancy = emt_labelled(vacancy_structures(cubic, (2, 2, 2)))
    assert 0.5 < vacancy_formation_energy(perfect, vacancy) < 1.5  # EMT's unrelaxed Cu vacancy, ~1.1 eV


def emt_reference(cubic):
    """EMT frames of the property categories, the primitive cell for the EOS as the Si reference has it."""
    frames, categories = [], []
    for atoms in emt_labelled(eos_structures(bulk('Cu', 'fcc', a=A_CU))):
        frames.append(atoms)
        categories.append(CATEGORIES['eos'])
    for atoms in emt_labelled(elastic_structures(cubic)[1:]):
        frames.append(atoms)
        categories.append(CATEGORIES['elastic'])
    for atoms in emt_labelled(vacancy_structures(cubic, (2, 1, 1))):
        frames.append(atoms)
        categories.append(CATEGORIES['vacancy'])
    rattled = emt_labelled([cubic.repeat((2, 1, 1)) for _ in range(2)])
    for index, atoms in enumerate(rattled):
        atoms.rattle(0.05, seed=index)
    frames.extend(emt_labelled(rattled))
    categories.extend(['rattled_8', 'rattled_8'])
    return frames, categories


def test_validation_of_two_models_against_emt(aiida_profile_clean, python_code, tiny_model_files, tmp_path):
    from ase.io import write

    from aiida_pfd.data import ModelData
    from aiida_pfd.reference import frame_categories, load_reference

    cubic = bulk('Cu', 'fcc', a=A_CU, cubic=True)
    frames, categories = emt_reference(cubic)
    for atoms, category in zip(frames, categories):
        atoms.info['category'] = category
    write(tmp_path / 'reference.extxyz', frames, format='extxyz')
    reference = load_reference(tmp_path / 'reference.extxyz', type_map=['Cu', 'Si']).store()
    assert sorted(frame_categories(reference)) == sorted(categories)

    models = {
        'teacher': ModelData(tiny_model_files['frozen']).store(),
        'student': ModelData(tiny_model_files['frozen']).store(),
    }
    builder = ValidationWorkChain.get_builder()
    builder.models = models
    builder.structure = orm.StructureData(ase=cubic)
    builder.code = python_code
    builder.reference = reference
    builder.teacher, builder.student = orm.Str('teacher'), orm.Str('student')
    builder.parameters = orm.Dict(
        {'vacancy_supercell': [2, 2, 1], 'phonon_supercell': [1, 1, 1], 'rdf': {'time': 0.1, 'supercell': [2, 1, 1]}}
    )
    builder.options = orm.Dict({'environment_variables': THREADS})

    results, node = run_get_node(builder)

    assert node.is_finished_ok, node.exit_message
    table = results['table'].get_dict()
    expected = reference_properties(frames, categories, A_CU)
    a0 = table['properties']['a0']
    assert a0['dft'] == pytest.approx(expected['a0']) and a0['dft'] == pytest.approx(3.59, abs=0.02)
    for name in ('c11', 'c12', 'c44_unrelaxed', 'vacancy_unrelaxed', 'b0'):
        assert table['properties'][name]['dft'] == pytest.approx(expected[name], rel=1e-6)
    # two nodes of the same network: identical properties, no flag
    row = table['properties']['b0']
    assert row['models']['teacher'] == pytest.approx(row['models']['student'], rel=1e-4)
    assert row['relative_error']['student'] == pytest.approx(abs(row['models']['student'] - row['dft']) / row['dft'])
    assert row['student_vs_teacher'] < 1e-3 and table['flags'] == []
    assert len(table['properties']['phonon_gamma']['models']['student']) == 3  # the primitive fcc cell's 3 modes
    assert results['properties']['student']['vacancy_large_atoms'] == 16
    categories_table = table['categories']['student']
    assert set(categories_table) == {*categories, 'overall'} and categories_table['rattled_8']['n_frames'] == 2
    assert categories_table['overall']['n_frames'] == len(frames)
    assert np.isfinite(categories_table['rattled_8']['force_rmse'])
