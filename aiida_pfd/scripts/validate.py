"""Properties of a crystal with a model: equation of state, elastic constants, phonons, vacancy, RDF.

Reads ``input.json`` as :class:`~aiida_pfd.calculations.validate.ValidateCalculation` writes it: the model, a cubic
conventional ``structure`` and ``parameters`` (see there). Writes ``results.json`` (one entry per property) and
``rdf.npy`` (r, g(r)) when the RDF is asked for. The formulas are :mod:`aiida_pfd.properties`, the same as for DFT.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from .common import build_atoms, get_calculator, main_guard

RESULTS_FILE = 'results.json'
RDF_FILE = 'rdf.npy'


def labelled(structures, calculator):
    """``structures`` with the calculator's energy, forces and stress as single-point labels."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for atoms in structures:
        atoms = atoms.copy()
        atoms.calc = calculator
        results = {'energy': atoms.get_potential_energy(), 'forces': atoms.get_forces(), 'stress': atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        out.append(atoms)
    return out


def relaxed(atoms, calculator, fmax: float):
    """``atoms`` with the ions relaxed by BFGS (cell fixed) to ``fmax`` eV/Å."""
    from ase.optimize import BFGS

    atoms = atoms.copy()
    atoms.calc = calculator
    BFGS(atoms, logfile=None).run(fmax=fmax, steps=500)
    return atoms


def elastic(cubic, calculator, parameters) -> dict:
    from ase.units import GPa

    from aiida_pfd.properties import elastic_constants, elastic_structures

    structures = elastic_structures(cubic, parameters['strain'])
    result = elastic_constants(labelled(structures, calculator), parameters['strain'])
    shear = relaxed(structures[2], calculator, parameters['fmax'])
    reference = labelled(structures[:1], calculator)[0].get_stress(voigt=False)
    result['c44'] = float((shear.get_stress(voigt=False)[1, 2] - reference[1, 2]) / (2 * parameters['strain']) / GPa)
    return result


def vacancy(cubic, calculator, parameters) -> dict:
    from aiida_pfd.properties import vacancy_formation_energy, vacancy_structures

    perfect, defective = labelled(vacancy_structures(cubic, (2, 1, 1)), calculator)
    result = {'vacancy_unrelaxed': vacancy_formation_energy(perfect, defective)}
    large, hole = labelled(vacancy_structures(cubic, parameters['vacancy_supercell']), calculator)
    result['vacancy_unrelaxed_large'] = vacancy_formation_energy(large, hole)
    result['vacancy_relaxed_large'] = vacancy_formation_energy(large, relaxed(hole, calculator, parameters['fmax']))
    result['vacancy_large_atoms'] = len(large)
    return result


def phonons(cubic, calculator, parameters) -> dict:
    """Frequencies (THz) at Gamma, X and L of the primitive cell (phonopy, finite displacements)."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(symbols=cubic.get_chemical_symbols(), cell=cubic.cell.array, positions=cubic.positions)
    phonon = Phonopy(unit, supercell_matrix=np.diag(parameters['phonon_supercell']), primitive_matrix='auto')
    phonon.generate_displacements(distance=0.01)
    forces = []
    for supercell in phonon.supercells_with_displacements:
        from ase import Atoms

        atoms = Atoms(supercell.symbols, cell=supercell.cell, positions=supercell.positions, pbc=True)
        atoms.calc = calculator
        forces.append(atoms.get_forces().copy())
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()
    points = {'gamma': [0, 0, 0], 'x': [0.5, 0.0, 0.5], 'l': [0.5, 0.5, 0.5]}  # primitive fcc reciprocal basis
    return {f'phonon_{name}': [float(f) for f in phonon.get_frequencies(point)] for name, point in points.items()}


def rdf(cubic, calculator, parameters) -> dict:
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    from aiida_pfd.properties import radial_distribution

    settings = parameters['rdf']
    atoms = cubic.repeat(settings['supercell'])
    atoms.calc = calculator
    atoms.set_constraint(FixCom())
    rng = np.random.default_rng(parameters['seed'])
    thermalize_momenta(atoms, settings['temperature'], exact_temperature=True, rng=rng)
    Stationary(atoms)
    dynamics = Langevin(
        atoms, 2 * units.fs, temperature_K=settings['temperature'], friction=0.02 / units.fs, fixcm=False, rng=rng
    )
    steps = int(settings['time'] * 500)
    dynamics.run(steps // 2)
    snapshots = []
    for _ in range(10):
        dynamics.run(max(1, steps // 20))
        snapshots.append(atoms.copy())
    r, g = radial_distribution(snapshots, rmax=settings['rmax'])
    np.save(RDF_FILE, np.stack([r, g]))
    return {'rdf_first_peak': float(r[int(np.argmax(g))]), 'rdf_temperature': settings['temperature']}


def main(parameters: dict) -> None:
    from aiida_pfd.properties import EOS_SCALES, eos_structures, equation_of_state

    calculator = get_calculator(parameters['model'])
    cubic = build_atoms(parameters['structure'])
    results = {}
    asked = parameters['properties']
    if 'eos' in asked:
        results.update(equation_of_state(labelled(eos_structures(cubic, EOS_SCALES), calculator), cubic.cell[0, 0]))
    steps = {'elastic': elastic, 'vacancy': vacancy, 'phonons': phonons, 'rdf': rdf}
    for name, step in steps.items():
        if name in asked:
            results.update(step(cubic, calculator, parameters))
            print(f'{name}: done', flush=True)
    pathlib.Path(RESULTS_FILE).write_text(json.dumps(results, indent=2))


if __name__ == '__main__':
    main_guard(main)
