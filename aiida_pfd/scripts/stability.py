"""Stability test of a model in molecular dynamics: NVT at each temperature, then NVE from its end state.

Reads ``input.json`` as :class:`~aiida_pfd.calculations.stability.StabilityCalculation` writes it. The structure is
repeated along its cell vectors to at least ``min_atoms`` atoms. Per temperature: Maxwell-Boltzmann velocities (seeded
by ``[seed, index]``), Langevin NVT for ``nvt_time`` ps, then velocity Verlet NVE for ``nve_time`` ps. Every
``thermo_every`` steps a row of :data:`THERMO_COLUMNS` goes to ``thermo/run.NNN.dat``, with the shortest interatomic
distance. The checks (``results.json``, per run):

- ``min_distance``: no pair of atoms ever comes closer than ``min_distance_fraction`` x its covalent-radius sum
  (atoms that collapse onto each other);
- ``temperature``: after the first ``equilibration`` ps of the NVT part, the temperature never strays from the
  target by more than ``temperature_tolerance`` (relative): heat released by a collapse, or a thermostat that cannot
  hold the model;
- ``energy_drift``: in NVE, the slope of the total energy per atom (least squares) is at most ``max_energy_drift``
  meV/atom/ps in magnitude (forces that are not the gradient of the energy, or a too long time step);
- ``finite``: energies, forces and positions stay finite (a run stops at the first non-finite value).

A run that fails a check is reported with the reason; the script then stops with ``ERROR_MODEL_UNSTABLE``.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from .common import ScriptStop, build_atoms, get_calculator, main_guard

THERMO_COLUMNS = (
    'step',
    'time_ps',
    'temperature_K',
    'epot_eV',
    'etot_eV',
    'min_distance_A',
    'min_distance_ratio',
    'nve',
)
THERMO_DIR = 'thermo'
RESULTS_FILE = 'results.json'


def repetitions(atoms, min_atoms: int) -> list[int]:
    """The repetition ``[n1, n2, n3]`` of the cell, as even as its lengths allow, giving at least ``min_atoms``."""
    lengths = atoms.cell.lengths()
    n = [1, 1, 1]
    while len(atoms) * int(np.prod(n)) < min_atoms:
        axis = int(np.argmin([length * count for length, count in zip(lengths, n)]))
        n[axis] += 1
    return n


def shortest_distances(atoms) -> tuple[float, float]:
    """The shortest interatomic distance and its ratio to the pair's covalent-radius sum (smallest ratio)."""
    from ase.data import covalent_radii
    from ase.neighborlist import neighbor_list

    radii = covalent_radii[atoms.numbers]
    first, second, distances = neighbor_list('ijd', atoms, 2.0 * float(radii.max()))
    if not len(distances):
        return np.inf, np.inf
    ratios = distances / (radii[first] + radii[second])
    return float(distances.min()), float(ratios.min())


def drift(times_ps: np.ndarray, energies: np.ndarray) -> float:
    """Least-squares slope of ``energies`` against ``times_ps`` (nan with fewer than two points)."""
    if len(times_ps) < 2:
        return float('nan')
    return float(np.polyfit(times_ps, energies, 1)[0])


def run_one(index: int, temperature: float, base, parameters: dict, calculator) -> dict:
    """NVT at ``temperature`` then NVE; write the thermo log; return the run's measurements and checks."""
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    atoms = base.copy()
    atoms.calc = calculator
    atoms.set_constraint(FixCom())  # the Langevin noise would move the centre of mass
    rng = np.random.default_rng([parameters['seed'], index])
    thermalize_momenta(atoms, temperature, exact_temperature=True, rng=rng)
    Stationary(atoms)
    timestep = parameters['timestep']
    nvt_steps = round(parameters['nvt_time'] * 1000 / timestep)
    nve_steps = round(parameters['nve_time'] * 1000 / timestep)
    every = parameters['thermo_every']
    natoms = len(atoms)
    rows, failure = [], None

    def record(step: int, nve: bool) -> str | None:
        energy = atoms.get_potential_energy()
        if not (np.isfinite(energy) and np.isfinite(atoms.positions).all() and np.isfinite(atoms.get_forces()).all()):
            return f'non-finite energy, forces or positions at step {step}'
        distance, ratio = shortest_distances(atoms)
        kinetic = atoms.get_kinetic_energy()
        rows.append(
            [step, step * timestep / 1000, atoms.get_temperature(), energy, energy + kinetic, distance, ratio, nve]
        )
        return None

    record(0, False)
    phases = [
        (
            Langevin(
                atoms,
                timestep * units.fs,
                temperature_K=temperature,
                friction=parameters['friction'] / units.fs,
                fixcm=False,
                rng=rng,
            ),
            nvt_steps,
            False,
        ),
        (None, nve_steps, True),
    ]
    done = 0
    for dynamics, nsteps, nve in phases:
        if failure or not nsteps:
            continue
        dynamics = dynamics or VelocityVerlet(atoms, timestep * units.fs)
        for _ in dynamics.irun(nsteps):
            step = done + dynamics.nsteps
            if dynamics.nsteps and dynamics.nsteps % every == 0:
                failure = record(step, nve)
                if failure:
                    break
        done += nsteps

    table = np.array(rows, dtype=float)
    path = pathlib.Path(THERMO_DIR) / f'run.{index:03d}.dat'
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, table, header=' '.join(THERMO_COLUMNS))
    return assess(index, temperature, natoms, table, failure, parameters)


def assess(index: int, temperature: float, natoms: int, table: np.ndarray, failure: str | None, parameters) -> dict:
    """The measurements and named checks of one run from its thermo table."""
    times, temperatures, etot, nve = table[:, 1], table[:, 2], table[:, 4], table[:, 7] > 0
    distances, ratios = table[:, 5], table[:, 6]
    settled = (~nve) & (times >= parameters['equilibration'])
    excursion = float(np.max(np.abs(temperatures[settled] - temperature)) / temperature) if settled.any() else np.nan
    slope = drift(times[nve], etot[nve] / natoms) * 1000 if nve.any() else float('nan')  # meV/atom/ps
    fraction = parameters['min_distance_fraction']
    checks = {
        'finite': failure is None,
        'min_distance': bool(ratios.min() >= fraction),
        'temperature': bool(np.isfinite(excursion) and excursion <= parameters['temperature_tolerance']),
        'energy_drift': bool(np.isfinite(slope) and abs(slope) <= parameters['max_energy_drift']),
    }
    reasons = []
    if failure:
        reasons.append(failure)
    if not checks['min_distance']:
        reasons.append(
            f'atoms came {distances.min():.3f} A close, {ratios.min():.2f} x their covalent-radius sum '
            f'(bound {fraction:g} x)'
        )
    if not checks['temperature']:
        reasons.append(f'temperature strayed {excursion:.1%} from {temperature:g} K')
    if not checks['energy_drift']:
        reasons.append(f'NVE energy drift {slope:.3g} meV/atom/ps')
    return {
        'index': index,
        'temperature': temperature,
        'n_atoms': natoms,
        'simulated_ps': float(times[-1]),
        'min_distance': float(distances.min()),
        'min_distance_ratio': float(ratios.min()),
        'temperature_mean': float(temperatures[settled].mean()) if settled.any() else None,
        'temperature_max_excursion': excursion,
        'energy_drift': slope,
        'checks': checks,
        'passed': all(checks.values()),
        'message': '; '.join(reasons),
    }


def main(parameters: dict) -> None:
    calculator = get_calculator(parameters['model'])
    atoms = build_atoms(parameters['structure'])
    repeat = repetitions(atoms, parameters['min_atoms'])
    base = atoms.repeat(repeat)
    runs = []
    for index, temperature in enumerate(parameters['temperatures']):
        runs.append(run_one(index, temperature, base, parameters, calculator))
        run = runs[-1]
        print(f'run.{index:03d} {temperature:g} K, {run["n_atoms"]} atoms: ' + (run['message'] or 'passed'), flush=True)
    results = {
        'runs': runs,
        'supercell': repeat,
        'n_atoms': len(base),
        'passed': all(run['passed'] for run in runs),
        'units': {'min_distance': 'A', 'energy_drift': 'meV/atom/ps', 'simulated_ps': 'ps', 'temperature': 'K'},
    }
    pathlib.Path(RESULTS_FILE).write_text(json.dumps(results, indent=2))
    failed = [run for run in runs if not run['passed']]
    if failed:
        raise ScriptStop(
            'ERROR_MODEL_UNSTABLE',
            f'{len(failed)} of {len(runs)} runs failed: '
            + '; '.join(f'{run["temperature"]:g} K: {run["message"]}' for run in failed),
        )


if __name__ == '__main__':
    main_guard(main)
