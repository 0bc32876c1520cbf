"""Molecular dynamics with a model through ASE, one task per (structure, temperature, pressure).

Reads ``input.json`` as :class:`~aiida_pfd.calculations.md_ase.AseMdCalculation` writes it (parameters resolved, with
the task list). Each task starts from its structure with Maxwell-Boltzmann velocities (seeded by ``[seed, task
index]``, rescaled to the exact temperature, without net momentum, and without net rotation for non-periodic
structures) and writes, for the states that passed the stability guard:

- ``frames/task.NNN/sys.*``: the frames sampled every ``sample_every`` steps (step 0 excluded), deepmd/npy labelled
  with the model's energy, forces and virial, in the model's type map;
- ``thermo/task.NNN.dat``: one row every ``thermo_every`` steps, step 0 included, columns :data:`THERMO_COLUMNS`.

``tasks.json`` summarises the tasks. A task that becomes unstable (atoms too close, non-finite energy, forces,
positions or cell, or a force above ``max_force``) ends there and keeps what it wrote; the other tasks still run, and
the script then stops with ``ERROR_UNSTABLE_TRAJECTORY``.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from .common import ScriptStop, build_atoms, get_calculator, main_guard, write_frames

THERMO_COLUMNS = ('step', 'time_fs', 'temperature_K', 'pressure_bar', 'epot_eV', 'etot_eV', 'volume_A3')
FRAMES_DIR = 'frames'
THERMO_DIR = 'thermo'
TASKS_FILE = 'tasks.json'


def task_name(index: int) -> str:
    return f'task.{index:03d}'


def build_dynamics(atoms, parameters: dict, temperature: float, pressure: float | None, rng):
    """The ASE integrator of the ensemble, thermostat and barostat in ``parameters`` (units converted from fs, bar)."""
    from ase import units

    timestep = parameters['timestep'] * units.fs
    if parameters['ensemble'] == 'nvt':
        if parameters['thermostat'] == 'langevin':
            from ase.md.langevin import Langevin

            friction = parameters['friction'] / units.fs
            return Langevin(atoms, timestep, temperature_K=temperature, friction=friction, fixcm=False, rng=rng)
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        return NoseHooverChainNVT(atoms, timestep, temperature_K=temperature, tdamp=parameters['tdamp'] * units.fs)

    if parameters['barostat'] == 'mtk':
        from ase.md.nose_hoover_chain import MTKNPT, IsotropicMTKNPT

        integrator = IsotropicMTKNPT if parameters['isotropic'] else MTKNPT
        return integrator(
            atoms,
            timestep,
            temperature_K=temperature,
            pressure_au=pressure * units.bar,
            tdamp=parameters['tdamp'] * units.fs,
            pdamp=parameters['pdamp'] * units.fs,
        )
    from ase.md.nptberendsen import Inhomogeneous_NPTBerendsen, NPTBerendsen

    integrator = NPTBerendsen if parameters['isotropic'] else Inhomogeneous_NPTBerendsen
    return integrator(
        atoms,
        timestep,
        temperature_K=temperature,
        pressure_au=pressure * units.bar,
        taut=parameters['tdamp'] * units.fs,
        taup=parameters['pdamp'] * units.fs,
        compressibility_au=parameters['compressibility'] / units.bar,
    )


def target_temperature(step: int, nsteps: int, temperature: float, peak: float | None) -> float:
    """The heat-quench schedule: ``temperature`` → ``peak`` over 40 % of the steps, held 20 %, back over 40 %."""
    if peak is None:
        return temperature
    fraction = step / nsteps
    rise = min(1.0, fraction / 0.4, (1.0 - fraction) / 0.4)
    return temperature + (peak - temperature) * max(0.0, rise)


def pair_bounds(atoms, min_distance: float | None):
    """``(cutoff, bound(i, j))``: a fixed ``min_distance``, or 0.5 x the pair's covalent-radius sum."""
    from ase.data import covalent_radii

    if min_distance is not None:
        return min_distance, lambda i, j: np.full(len(i), min_distance)
    radii = covalent_radii[atoms.numbers]
    return float(radii.max()), lambda i, j: 0.5 * (radii[i] + radii[j])


def instability(atoms, cutoff: float, bound, max_force: float | None) -> str | None:
    """Why the current state of ``atoms`` is unstable, or None."""
    from ase.neighborlist import neighbor_list

    if not (np.isfinite(atoms.positions).all() and np.isfinite(atoms.cell.array).all()):
        return 'non-finite positions or cell'
    energy, forces = atoms.get_potential_energy(), atoms.get_forces(apply_constraint=False)
    if not (np.isfinite(energy) and np.isfinite(forces).all()):
        return 'non-finite energy or forces'
    first, second, distances = neighbor_list('ijd', atoms, cutoff)
    if len(distances):
        bounds = bound(first, second)
        close = np.flatnonzero(distances < bounds)
        if len(close):
            k = close[np.argmin(distances[close] / bounds[close])]
            i, j = first[k], second[k]
            return (
                f'atoms {i} ({atoms.symbols[i]}) and {j} ({atoms.symbols[j]}) are {distances[k]:.4f} A apart, '
                f'closer than {bounds[k]:.4f} A'
            )
    if max_force is not None:
        norms = np.linalg.norm(forces, axis=1)
        if norms.max() > max_force:
            return f'the force on atom {int(norms.argmax())} is {norms.max():.3g} eV/A, above max_force {max_force}'
    return None


def labelled_copy(atoms):
    """A copy of ``atoms`` with the model's energy, forces and (periodic cells) stress as single-point labels."""
    from ase.calculators.singlepoint import SinglePointCalculator

    frame = atoms.copy()
    frame.set_constraint()
    results = {'energy': atoms.get_potential_energy(), 'forces': atoms.get_forces(apply_constraint=False).copy()}
    if atoms.pbc.all():
        results['stress'] = atoms.get_stress().copy()
    frame.calc = SinglePointCalculator(frame, **results)
    return frame


def thermo_row(atoms, step: int, timestep: float) -> list[float]:
    from ase import units

    periodic = atoms.pbc.all()
    epot = atoms.get_potential_energy()
    pressure = -np.trace(atoms.get_stress(voigt=False, include_ideal_gas=True)) / 3 / units.bar if periodic else np.nan
    return [
        step,
        step * timestep,
        atoms.get_temperature(),
        pressure,
        epot,
        epot + atoms.get_kinetic_energy(),
        atoms.get_volume() if periodic else np.nan,
    ]


def run_task(task: dict, parameters: dict, calculator) -> dict:
    """Run one task; write its frames and thermo log; return its summary."""
    from ase.constraints import FixCom
    from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta

    index, temperature, pressure = task['index'], task['temperature'], task.get('pressure')
    name = task_name(index)
    rng = np.random.default_rng([parameters['seed'], index])
    atoms = build_atoms(parameters['structures'][task['structure']])
    atoms.calc = calculator
    if parameters.get('thermostat') == 'langevin':  # its random forces would move the centre of mass
        atoms.set_constraint(FixCom())
    thermalize_momenta(atoms, temperature, exact_temperature=True, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():  # a periodic cell has no conserved angular momentum to remove
        ZeroRotation(atoms)
    dynamics = build_dynamics(atoms, parameters, temperature, pressure, rng)

    cutoff, bound = pair_bounds(atoms, parameters['min_distance'])
    frames, reason, step = [], None, 0
    thermo_path = pathlib.Path(THERMO_DIR) / f'{name}.dat'
    thermo_path.parent.mkdir(parents=True, exist_ok=True)
    with open(thermo_path, 'w', buffering=1) as thermo:
        thermo.write('# ' + ' '.join(THERMO_COLUMNS) + '\n')
        peak = parameters.get('peak_temperature')
        for _ in dynamics.irun(parameters['nsteps']):
            step = dynamics.nsteps
            if peak is not None:
                dynamics.set_temperature(
                    temperature_K=target_temperature(step, parameters['nsteps'], temperature, peak)
                )
            reason = instability(atoms, cutoff, bound, parameters['max_force'])
            if reason:
                break
            if step % parameters['thermo_every'] == 0:
                thermo.write(' '.join(f'{value:.10g}' for value in thermo_row(atoms, step, parameters['timestep'])))
                thermo.write('\n')
            if step and step % parameters['sample_every'] == 0:
                frames.append(labelled_copy(atoms))

    if frames:
        write_frames(frames, pathlib.Path(FRAMES_DIR) / name, parameters['type_map'])
    return {
        'index': index,
        'name': name,
        'structure': task['structure'],
        'temperature': temperature,
        'pressure': pressure,
        'ensemble': parameters['ensemble'],
        'n_frames': len(frames),
        'status': 'unstable' if reason else 'ok',
        'unstable_step': step if reason else None,
        'message': f'unstable at step {step}: {reason}' if reason else '',
    }


def main(parameters: dict) -> None:
    calculator = get_calculator(parameters['model'])
    summaries = []
    for task in parameters['tasks']:
        summaries.append(run_task(task, parameters, calculator))
        print(f'{summaries[-1]["name"]}: {summaries[-1]["status"]}, {summaries[-1]["n_frames"]} frames', flush=True)

    unstable = [summary for summary in summaries if summary['status'] == 'unstable']
    summary = {
        'tasks': summaries,
        'n_tasks': len(summaries),
        'n_frames': sum(task['n_frames'] for task in summaries),
        'n_unstable': len(unstable),
    }
    pathlib.Path(TASKS_FILE).write_text(json.dumps(summary, indent=2))
    if unstable:
        raise ScriptStop(
            'ERROR_UNSTABLE_TRAJECTORY',
            f'{len(unstable)} of {len(summaries)} tasks unstable: '
            + '; '.join(
                f'{task["name"]} ({task["structure"]}, {task["temperature"]} K'
                + (f', {task["pressure"]} bar' if task['pressure'] is not None else '')
                + f') {task["message"]}'
                for task in unstable
            ),
        )


if __name__ == '__main__':
    main_guard(main)
