#!/usr/bin/env python
"""Submit one pw.x single point on bulk Si to the daemon and print its energy and forces.

Run after ``aiida-pfd setup`` (``make demo`` does both)::

    python examples/si_singlepoint.py [--profile pfd] [--protocol balanced]

The 2-atom diamond cell has one atom displaced by 0.05 Å along x, so the forces are not zero by symmetry.
"""

from __future__ import annotations

import argparse

import numpy as np
from aiida import load_profile, orm
from aiida.engine import submit
from ase.build import bulk

from aiida_pfd.progress import follow
from aiida_pfd.workflows.labelling.quantumespresso import get_pw_builder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--profile', default='pfd')
    parser.add_argument('--code', default='pw@localhost')
    parser.add_argument('--protocol', default='balanced')
    args = parser.parse_args()

    load_profile(args.profile)
    atoms = bulk('Si', 'diamond', a=5.43)
    atoms.positions[1, 0] += 0.05
    structure = orm.StructureData(ase=atoms)

    builder = get_pw_builder(orm.load_code(args.code), structure, protocol=args.protocol)
    node = submit(builder)
    print(f'Submitted PwBaseWorkChain<{node.pk}> to the daemon; follow it with `verdi process status {node.pk}`.')
    follow(node, poll=2)

    if not node.is_finished_ok:
        print(f'PwBaseWorkChain<{node.pk}> failed with exit status {node.exit_status}: {node.exit_message}')
        print(f'See `verdi process report {node.pk}`.')
        return 1

    energy = node.outputs.output_parameters['energy']
    forces = np.asarray(node.outputs.output_trajectory.get_array('forces'))[-1]
    print(f'\nSi, 2-atom diamond cell, PwBaseWorkChain<{node.pk}>')
    print(f'Total energy: {energy:.6f} eV')
    print('Forces (eV/Å):')
    for index, force in enumerate(forces):
        print(f'  Si{index + 1}  {force[0]: .6f} {force[1]: .6f} {force[2]: .6f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
