#!/usr/bin/env python
"""Fine-tune SevenNet-0 to crystalline Si with the PFD loop: pw.x labels, MD exploration, error-band selection.

Run after ``aiida-pfd setup`` (the daemon must run)::

    python examples/pfd_si.py [--profile pfd] [--max-iterations 3]

DFT: Debian's Si.pbe-nl-rrkjus_psl.1.0.0.UPF at 30/240 Ry, cold smearing 0.01 Ry, k-point spacing 0.4 1/Å (the
``balanced`` labelling preset). Exploration: the 8-atom diamond cell, NVT at 300-1000 K, then NPT at 300-1000 K and
0-1 GPa. The foundation is SevenNet-0 as shipped with ``sevenn``: it has never seen these DFT data.
"""

from __future__ import annotations

import argparse
import time

from aiida import load_profile, orm
from aiida.engine import submit
from ase.build import bulk


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--profile', default='pfd')
    parser.add_argument('--max-iterations', type=int, default=3)
    parser.add_argument('--epochs', type=int, default=30, help='SevenNet fine-tuning epochs per fine-tuning')
    args = parser.parse_args()

    load_profile(args.profile)
    from aiida_pfd.data import ModelData
    from aiida_pfd.progress import follow
    from aiida_pfd.workflows.pfd import PFDWorkChain

    start = time.time()
    structure = orm.StructureData(ase=bulk('Si', 'diamond', a=5.43, cubic=True))
    foundation = ModelData.from_shipped('sevennet-0').store()
    overrides = {
        'perturbation': {'frames': 4, 'cell_fraction': 0.03, 'atom_displacement': 0.1},
        'exploration': {
            'stages': [
                [
                    {
                        'ensemble': 'nvt',
                        'temperatures': [300, 600, 1000],
                        'nsteps': 300,
                        'timestep': 2.0,
                        'sample_every': 30,
                    }
                ],
                [
                    {
                        'ensemble': 'npt',
                        'temperatures': [300, 1000],
                        'pressures': [1.0, 10000.0],
                        'nsteps': 300,
                        'timestep': 2.0,
                        'sample_every': 30,
                    }
                ],
            ]
        },
        'selection': {'max_frames': 5, 'diversity': 'entropy', 'error_band': [0.03, 1.5]},
        'training': {'parameters': {'sevenn': {'train': {'epoch': args.epochs}}}},
        'convergence': {'force_rmse': 0.06, 'energy_rmse': 0.003, 'max_iterations': args.max_iterations},
    }
    builder = PFDWorkChain.get_builder_from_protocol(
        codes={'pw': 'pw@localhost', 'python': 'python@localhost', 'dp': 'dp@localhost'},
        structures={'si8': structure},
        foundation_model=foundation,
        protocol='balanced',
        overrides=overrides,
    )
    node = submit(builder)
    print(f'Submitted PFDWorkChain<{node.pk}>; `verdi process status {node.pk}` shows its jobs per iteration.')
    follow(node, poll=10)

    history = node.outputs.history['iterations'] if 'history' in node.outputs else []
    n_dft = (
        orm.QueryBuilder()
        .append(orm.WorkflowNode, filters={'id': node.pk}, tag='pfd')
        .append(orm.WorkflowNode, with_incoming='pfd', filters={'attributes.process_label': 'PwBaseWorkChain'})
        .count()
    )
    print(f'\nPFDWorkChain<{node.pk}> finished [{node.exit_status}] {node.exit_message or ""}')
    print(f'DFT calculations: {n_dft}, iterations: {len(history)}')
    for entry in history:
        print(
            f'  iteration {entry["iteration"]}: {entry["dft_labelled"]} labelled ({entry["dft_failed"]} failed), '
            f'force RMSE {entry["force_rmse"]:.3f} eV/Å, energy RMSE {entry["energy_rmse_per_atom"] * 1000:.1f} '
            f'meV/atom, added {entry["frames_added"]}'
        )
    if 'metrics' in node.outputs:
        metrics = node.outputs.metrics
        print(
            f'Final model on {metrics["n_frames"]} test frames: force RMSE {metrics["force_rmse"]:.4f} eV/Å, '
            f'energy RMSE {metrics["energy_rmse_per_atom"] * 1000:.2f} meV/atom'
        )
    if 'model' in node.outputs:
        print(f'Model: ModelData<{node.outputs.model.pk}>, training set {node.outputs.training_set.n_frames} frames')
    print(f'Wall time {time.time() - start:.0f} s')
    return 0 if node.exit_status in (0, PFDWorkChain.exit_codes.ERROR_NOT_CONVERGED.status) else 1


if __name__ == '__main__':
    raise SystemExit(main())
