"""Time velocity-Verlet MD with several models on the same supercells.

``input.json``: ``models`` (``{name: {"backend", "path", "head"}}``), ``structure`` (the unit cell), and the resolved
parameters of :class:`~aiida_pfd.calculations.speed.SpeedCalculation`: ``sizes``, ``steps``, ``warmup``,
``timestep``, ``temperature``, ``seed``, ``baseline``, ``max_step_seconds``.

Each target size becomes the supercell of :func:`repetitions`; sizes run from the smallest up. Every model runs on a
copy of it with the same initial velocities (Maxwell-Boltzmann from ``numpy.random.default_rng([seed, size index])``,
no net momentum): ``warmup`` untimed steps, then ``steps`` steps each timed with ``time.perf_counter``. A model whose
last warm-up step (the first timed step when ``warmup`` is 0) exceeds ``max_step_seconds`` is skipped there and at
every larger size (null entries). Output ``speed.json`` (see :func:`summary`); a readable table on standard output.
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import platform
import time

import numpy as np

from .common import ScriptStop, build_atoms, get_calculator, main_guard

SPEED_FILE = 'speed.json'

UNITS = {
    'median_step_seconds': 's',
    'ms_per_atom_step': 'ms/(atom step)',
    'step_seconds': 's',
    'timestep': 'fs',
    'temperature': 'K',
}


def repetitions(atoms, target: int) -> tuple[int, int, int]:
    """Repetition ``(n1, n2, n3)`` of ``atoms`` for a supercell of about ``target`` atoms, as isotropic as possible.

    The ideal repetitions ``x_i`` give equal widths (distances between opposite cell faces) and exactly ``target``
    atoms; each is rounded down or up (at least 1), and of these candidates the one whose atom count is closest to
    ``target`` wins (ties: the most isotropic, then the fewest atoms). Non-periodic axes are not repeated.
    """
    periodic = [axis for axis in range(3) if atoms.pbc[axis]]
    if not periodic:
        return (1, 1, 1)
    widths = 1.0 / np.linalg.norm(atoms.cell.complete().reciprocal(), axis=1)
    factor = target / len(atoms)
    common = (factor * np.prod(widths[periodic])) ** (1.0 / len(periodic))
    choices = [
        sorted({max(1, int(np.floor(common / widths[axis]))), max(1, int(np.ceil(common / widths[axis])))})
        if axis in periodic
        else [1]
        for axis in range(3)
    ]

    def key(candidate):
        count = len(atoms) * int(np.prod(candidate))
        lengths = [candidate[axis] * widths[axis] for axis in periodic]
        return abs(count - target), round(max(lengths) / min(lengths), 6), count, candidate

    return min(itertools.product(*choices), key=key)


def initial_atoms(unit, target: int, parameters: dict, index: int):
    """The supercell for size ``index`` with its initial velocities, and its repetition."""
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    repeat = repetitions(unit, target)
    atoms = unit.repeat(repeat)
    rng = np.random.default_rng([parameters['seed'], index])
    thermalize_momenta(atoms, parameters['temperature'], rng=rng)  # ASE's MaxwellBoltzmannDistribution, renamed
    Stationary(atoms)
    return atoms, repeat


def time_model(name: str, atoms, calculator, parameters: dict) -> tuple[list[float] | None, float]:
    """Run the warm-up and timed steps on ``atoms``; return the timed step durations (None if skipped) and the
    duration of the step compared with ``max_step_seconds``."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    atoms.calc = calculator
    dynamics = VelocityVerlet(atoms, timestep=parameters['timestep'] * units.fs)
    bound, warmup = parameters['max_step_seconds'], parameters['warmup']
    durations, forces, checked = [], None, 0.0
    for step in range(warmup + parameters['steps']):
        start = time.perf_counter()
        forces = dynamics.step(forces)
        duration = time.perf_counter() - start
        energy = atoms.get_potential_energy()
        if not (np.isfinite(energy) and np.isfinite(forces).all()):
            raise ScriptStop(
                'ERROR_NON_FINITE_PREDICTIONS',
                f'model `{name}` gave NaN or infinite energy or forces at MD step {step + 1} on {len(atoms)} atoms.',
            )
        if step == max(warmup - 1, 0):
            checked = duration
            if bound is not None and duration > bound:
                return None, checked
        if step >= warmup:
            durations.append(duration)
    return durations, checked


def summary(parameters: dict, n_atoms: list[int], repeats: list, step_seconds: dict[str, list]) -> dict:
    """The content of ``speed.json``: per size ``n_atoms`` and ``repetitions``; per model ``backend``,
    ``median_step_seconds``, ``ms_per_atom_step`` and ``step_seconds`` (null where skipped); ``speedup`` (the
    baseline's ms per atom-step over the model's, null where either is null); machine and thread counts; ``units``."""
    models = {}
    for name, durations in step_seconds.items():
        medians = [float(np.median(steps)) if steps is not None else None for steps in durations]
        models[name] = {
            'backend': parameters['models'][name]['backend'],
            'median_step_seconds': medians,
            'ms_per_atom_step': [m / n * 1000 if m is not None else None for m, n in zip(medians, n_atoms)],
            'step_seconds': durations,
        }
    baseline = models[parameters['baseline']]['ms_per_atom_step']
    speedup = {
        name: [b / m if b is not None and m is not None else None for b, m in zip(baseline, model['ms_per_atom_step'])]
        for name, model in models.items()
    }
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:
        threads = None
    return {
        'sizes': list(parameters['sizes']),
        'n_atoms': n_atoms,
        'repetitions': [list(repeat) for repeat in repeats],
        'models': models,
        'baseline': parameters['baseline'],
        'speedup': speedup,
        'steps': parameters['steps'],
        'warmup': parameters['warmup'],
        'timestep': parameters['timestep'],
        'temperature': parameters['temperature'],
        'threads': threads,
        'cpu_count': os.cpu_count(),
        'node': platform.node(),
        'units': UNITS,
    }


def table(speed: dict) -> str:
    """``speed`` as a text table: one row per size and model."""

    def number(value, spec):
        return 'skipped' if value is None else format(value, spec)

    lines = [f'{"atoms":>7}  {"model":<16} {"s/step":>10} {"ms/atom-step":>13} {"speedup":>8}']
    for index, n in enumerate(speed['n_atoms']):
        for name, model in speed['models'].items():
            lines.append(
                f'{n:>7}  {name:<16} {number(model["median_step_seconds"][index], ".4g"):>10} '
                f'{number(model["ms_per_atom_step"][index], ".4g"):>13} '
                f'{number(speed["speedup"][name][index], ".3g"):>8}'
            )
    lines.append(
        f'baseline {speed["baseline"]}; {speed["threads"]} threads, {speed["cpu_count"]} CPUs on {speed["node"]}'
    )
    return '\n'.join(lines)


def run(parameters: dict) -> None:
    unit = build_atoms(parameters['structure'])
    names = list(parameters['models'])
    calculators = {name: get_calculator(parameters['models'][name]) for name in names}
    bound = parameters['max_step_seconds']
    sizes = parameters['sizes']
    n_atoms, repeats = [None] * len(sizes), [None] * len(sizes)
    step_seconds = {name: [None] * len(sizes) for name in names}
    skipped_from: dict[str, int] = {}  # model -> smallest atom count at which it was skipped
    for index in sorted(range(len(sizes)), key=lambda i: sizes[i]):  # smallest first, so that skips carry upwards
        atoms, repeats[index] = initial_atoms(unit, sizes[index], parameters, index)
        n_atoms[index] = len(atoms)
        for name in names:
            if len(atoms) >= skipped_from.get(name, len(atoms) + 1):
                steps = None
                print(f'{name} at {len(atoms)} atoms: skipped (skipped at {skipped_from[name]} atoms)', flush=True)
            else:
                steps, checked = time_model(name, atoms.copy(), calculators[name], parameters)
                if steps is None:
                    skipped_from.setdefault(name, len(atoms))
                    print(f'{name} at {len(atoms)} atoms: skipped, a step took {checked:.3g} s > {bound} s', flush=True)
                else:
                    print(f'{name} at {len(atoms)} atoms: median {np.median(steps):.4g} s/step', flush=True)
            step_seconds[name][index] = steps

    speed = summary(parameters, n_atoms, repeats, step_seconds)
    pathlib.Path(SPEED_FILE).write_text(json.dumps(speed, indent=2))
    print(table(speed))


if __name__ == '__main__':
    main_guard(run)
