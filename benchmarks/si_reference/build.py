#!/usr/bin/env python
"""Build ``examples/data/si_reference.extxyz``: independent pw.x frames of Si, by category, that no workflow trains on.

Configurations come from Langevin MD with SevenNet-0 as shipped (it has never seen these DFT data), seeded, plus
exact structures for the properties (equation of state and elastic strains of the primitive cell, a perfect and a
vacancy cell). Each frame is labelled by ``PwBaseWorkChain`` with the demo's DFT preset (``balanced``: Debian's
Si.pbe-nl-rrkjus_psl.1.0.0.UPF, 30/240 Ry, k-point spacing 0.4 1/Å), one serial pw.x per frame, at most ``--jobs``
at a time. Run it with the profile's daemon running::

    python benchmarks/si_reference/build.py --profile pfd --jobs 2

Every frame's ``info`` holds ``category``, ``config`` (how it was made) and the pw.x ``PwBaseWorkChain`` uuid.
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import time
from collections.abc import Callable

import numpy as np
from ase import Atoms
from ase.build import bulk

A0 = 5.43
OUTPUT = pathlib.Path(__file__).resolve().parents[2] / 'examples' / 'data' / 'si_reference.extxyz'


def md_snapshots(
    atoms: Atoms,
    temperature: float,
    count: int,
    seed: int,
    steps: int = 600,
    every: int = 50,
    peak: float | None = None,
) -> list[Atoms]:
    """``count`` snapshots of Langevin MD (2 fs) with SevenNet-0 on one thread, after ``steps - count * every``
    steps; with ``peak`` the thermostat first melts the cell at ``peak`` K for ``steps // 2`` steps."""
    import torch
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from sevenn.calculator import SevenNetCalculator

    torch.set_num_threads(1)  # beside the pw.x runs: more threads only spin
    atoms = atoms.copy()
    atoms.calc = SevenNetCalculator('7net-0', device='cpu')
    rng = np.random.default_rng(seed)
    start = peak or temperature
    thermalize_momenta(atoms, start, exact_temperature=True, rng=rng)
    Stationary(atoms)
    dynamics = Langevin(atoms, 2 * units.fs, temperature_K=start, friction=0.02 / units.fs, rng=rng)
    if peak:
        dynamics.run(steps // 2)
        dynamics.set_temperature(temperature_K=temperature)
    dynamics.run(steps - count * every)
    frames = []
    for _ in range(count):
        dynamics.run(every)
        frame = atoms.copy()
        frame.calc = None
        frames.append(frame)
    return frames


def configurations() -> list[tuple[str, str, Callable[[], Atoms]]]:
    """(category, how it was made, a function that makes the atoms) of every frame, in a fixed order. The MD of a
    category runs when the first of its frames is asked for (once), so that its pw.x runs start while the next
    category's MD runs, and frames already labelled cost no MD."""

    def snap(atoms, temperature, count, **kwargs):
        run = functools.cache(lambda: md_snapshots(atoms, temperature, count, **kwargs))
        return [functools.partial(lambda index: run()[index], index) for index in range(count)]

    def exact(atoms):
        return [lambda: atoms]

    diamond = bulk('Si', 'diamond', a=A0, cubic=True)
    primitive = bulk('Si', 'diamond', a=A0)
    hexagonal = bulk('SiSi', 'wurtzite', a=3.84, c=6.34, orthorhombic=True)
    double = diamond.repeat((2, 1, 1))
    vacancy = double.copy()
    del vacancy[0]
    interstitial = double.copy()
    interstitial.append('Si')
    interstitial.positions[-1] = np.array([0.5, 0.5, 0.5]) * A0  # tetrahedral site of the first cubic cell
    out = []

    def add(category, config, frames):
        out.extend((category, config, frame) for frame in frames)

    add('crystal_8', 'Si8 diamond, SevenNet-0 MD 600 K', snap(diamond, 600, 4, seed=11))
    add(
        'supercell_32',
        'Si32 (2x2x1) diamond, SevenNet-0 MD 1000 K',
        snap(diamond.repeat((2, 2, 1)), 1000, 3, seed=12),
    )
    add('hot_16', 'Si16 (2x1x1) diamond, SevenNet-0 MD 1500 K', snap(double, 1500, 4, seed=13))
    add('vacancy_15', 'Si15 (2x1x1 less one atom), SevenNet-0 MD 600 K', snap(vacancy, 600, 4, seed=14))
    add(
        'interstitial_17',
        'Si17 (2x1x1 plus tetrahedral interstitial), SevenNet-0 MD 600 K',
        snap(interstitial, 600, 4, seed=15),
    )
    for strain in (-0.05, 0.05):
        cell = diamond.copy()
        cell.set_cell(cell.cell * (1 + strain), scale_atoms=True)
        add(
            'strained_8',
            f'Si8 diamond at {strain:+.0%} linear strain, SevenNet-0 MD 600 K',
            snap(cell, 600, 2, seed=16 if strain < 0 else 17),
        )
    add(
        'hex_diamond_8',
        'Si8 hexagonal diamond (orthorhombic cell), SevenNet-0 MD 600 K',
        snap(hexagonal, 600, 4, seed=18),
    )
    add(
        'disordered_16',
        'Si16 melted at 3000 K and held at 1800 K, SevenNet-0 MD',
        snap(double, 1800, 4, seed=19, steps=1000, peak=3000),
    )
    # properties: exact structures
    for scale in np.linspace(0.97, 1.03, 7):
        cell = primitive.copy()
        cell.set_cell(cell.cell * scale, scale_atoms=True)
        add('eos_2', f'Si2 primitive at {scale:.3f} a0', exact(cell))
    for name, strain in (('e_xx', np.diag([0.01, 0, 0])), ('e_yz', np.array([[0, 0, 0], [0, 0, 0.01], [0, 0.01, 0]]))):
        cell = diamond.copy()
        cell.set_cell(cell.cell @ (np.eye(3) + strain), scale_atoms=True)
        add('elastic_8', f'Si8 cubic cell, strain {name} = 0.01 (unrelaxed ions)', exact(cell))
    add('vacancy_formation', 'Si16 (2x1x1) perfect', exact(double.copy()))
    add('vacancy_formation', 'Si15 (2x1x1) unrelaxed vacancy', exact(vacancy.copy()))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--profile', default='pfd')
    parser.add_argument('--jobs', type=int, default=2, help='pw.x runs at a time')
    parser.add_argument(
        '--collect', action='store_true', help='submit nothing: write the frames whose pw.x runs have finished'
    )
    parser.add_argument(
        '--only', nargs='+', metavar='CATEGORY', help='label only these categories (those made without MD run none)'
    )
    args = parser.parse_args()

    from aiida import load_profile, orm

    load_profile(args.profile)
    from aiida.engine import submit

    from aiida_pfd.workflows.labelling.quantumespresso import (
        all_kinds_structure,
        frame_from_pw,
        get_pw_builder,
        pseudos_for,
    )

    frames = configurations()
    print(f'{len(frames)} configurations', flush=True)
    # A run is found again by its label: a second call resumes, reusing every pw.x run that finished.
    query = orm.QueryBuilder().append(orm.WorkflowNode, filters={'label': {'like': 'si_reference_%'}})
    wanted = [i for i, (category, _, _) in enumerate(frames) if not args.only or category in args.only]
    done, running = {}, {}
    for (node,) in query.iterall():
        index = int(node.label.rsplit('_', 1)[1])
        if node.is_finished_ok and index < len(frames):
            done[index] = node
        elif not node.is_terminated and not args.collect:
            running[index] = node  # in flight (a run before this one submitted it): wait for it, it takes a job slot
    template = get_pw_builder(
        orm.load_code('pw@localhost'),
        all_kinds_structure({'si': orm.StructureData(ase=bulk('Si', 'diamond', a=A0))}),
        protocol='balanced',
    )
    pending = [] if args.collect else [(i, frames[i]) for i in wanted if i not in done and i not in running]
    while pending or running:
        while pending and len(running) < args.jobs:
            index, (category, config, make) = pending.pop(0)
            builder = template._inputs(prune=True)
            structure = orm.StructureData(ase=make())
            builder['pw']['structure'] = structure
            builder['pw']['pseudos'] = pseudos_for(structure, builder['pw']['pseudos'])
            builder['pw']['metadata']['options']['resources'] = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
            builder['pw']['metadata']['options']['withmpi'] = True
            builder['metadata'] = {'label': f'si_reference_{index:03d}'}
            from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

            running[index] = submit(PwBaseWorkChain, **builder)
        time.sleep(5)
        for index, node in list(running.items()):
            if node.is_terminated:
                del running[index]
                done[index] = node
                status = 'ok' if node.is_finished_ok else f'failed [{node.exit_status}]'
                print(f'{index:03d} {frames[index][0]}: {status} ({len(done)}/{len(frames)})', flush=True)

    if args.only:
        print(f'labelled {sorted(set(wanted) & set(done))} of {args.only}')
        return 0
    out = []
    for index, (category, config, _) in enumerate(frames):
        node = done.get(index)
        if node is None or not node.is_finished_ok:
            print(f'{index:03d} {category}: no finished pw.x run, left out')
            continue
        frame = frame_from_pw(node.inputs.pw.structure, node.outputs.output_parameters, node.outputs.output_trajectory)
        atoms = frame.to_ase()[0]
        atoms.info.update({'category': category, 'config': config, 'pw_uuid': node.uuid})
        out.append(atoms)
    from ase.io import write

    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    write(OUTPUT, out, format='extxyz')
    print(f'wrote {len(out)} frames to {OUTPUT}')
    return 0 if len(out) == len(frames) else 1


if __name__ == '__main__':
    raise SystemExit(main())
