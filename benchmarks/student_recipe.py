#!/usr/bin/env python
"""Student recipes side by side: the distillation's DeePMD student trained from scratch on the same frames with
different settings, scored on the same held-out frames, with its training time, in one run.

The frames are the PFD paper's Si set (``../shared/data/pfd-paper/Si_train.extxyz``, VASP, 2-64 atoms, seven
phases and the vacancy) or any extxyz with energies and forces: a stand-in for teacher-labelled frames, since what
is measured is how well and how fast each recipe learns a given labeller. Run::

    python benchmarks/student_recipe.py [--frames FILE] [--steps 2000] [--recipes current,no_zbl,...] [-o DIR]

It writes ``student_recipe.json`` and ``student_recipe.md`` to the output folder (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import subprocess
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
FRAMES = ROOT.parent / 'shared' / 'data' / 'pfd-paper' / 'Si_train.extxyz'


def student(kind: str) -> dict:
    """The protocol's student template ``kind`` (protocols/distill.yaml)."""
    import yaml

    protocol = yaml.safe_load((ROOT / 'aiida_pfd' / 'protocols' / 'distill.yaml').read_text())
    return copy.deepcopy(protocol['students'][kind])


def loss(start_pref_e=0.02, limit_pref_e=1.0, start_pref_f=1000.0, limit_pref_f=1.0) -> dict:
    return {
        'type': 'ener',
        'start_pref_e': start_pref_e,
        'limit_pref_e': limit_pref_e,
        'start_pref_f': start_pref_f,
        'limit_pref_f': limit_pref_f,
        'start_pref_v': 0.0,
        'limit_pref_v': 0.0,
    }


def recipes(steps: int) -> dict[str, dict]:
    """Each recipe: the student template (and its fitting net), loss, learning rate, batch size and whether ZBL is
    blended in."""
    decay = max(steps // 15, 1)
    lr = {'type': 'exp', 'start_lr': 0.002, 'stop_lr': 0.00002, 'decay_steps': decay}
    base = {'model': 'se_atten_v2_compact', 'loss': loss(), 'learning_rate': lr, 'batch': 'auto', 'zbl': True}
    return {
        'current': base,
        'no_zbl': {**base, 'zbl': False},
        'energy_weighted': {**base, 'loss': loss(start_pref_e=0.2, limit_pref_e=5.0, start_pref_f=100.0)},
        'batch_128': {**base, 'batch': 'auto:128'},
        'se_e2_a': {**base, 'model': 'se_e2_a', 'zbl': False},
        'fitting_120': {**base, 'fitting': [120, 120, 120]},
    }


def write_systems(frames, folder: pathlib.Path, type_map: list[str]) -> list[str]:
    """The frames as deepmd/npy systems, one per atom count and cell shape (dpdata's MultiSystems)."""
    import dpdata

    systems = dpdata.MultiSystems(type_map=type_map)
    for atoms in frames:
        systems.append(dpdata.LabeledSystem(atoms, fmt='ase/structure'))
    systems.to_deepmd_npy(str(folder))
    return sorted(str(path.parent) for path in folder.rglob('type.raw'))


def train(recipe: dict, train_systems, type_map, folder: pathlib.Path, steps: int, threads: int) -> float:
    from aiida_pfd.zbl import pair_table

    config = student(recipe['model'])
    config['model']['type_map'] = type_map
    if 'fitting' in recipe:
        config['model']['fitting_net']['neuron'] = recipe['fitting']
    if recipe['zbl']:
        rcut = config['model']['descriptor']['rcut']
        table = folder / 'zbl.txt'
        np.savetxt(table, pair_table(type_map, rcut))
        config['model'].update({'use_srtab': str(table), 'sw_rmin': 1.11, 'sw_rmax': 1.665})
    config['learning_rate'] = recipe['learning_rate']
    config['loss'] = recipe['loss']
    config['training'] = {
        'numb_steps': steps,
        'disp_freq': max(steps // 10, 1),
        'save_freq': steps,
        'seed': 1,
        'max_ckpt_keep': 1,
        'training_data': {'systems': train_systems, 'batch_size': recipe['batch']},
    }
    (folder / 'input.json').write_text(json.dumps(config, indent=1))
    env = {**os.environ, 'OMP_NUM_THREADS': str(threads), 'DP_INTRA_OP_PARALLELISM_THREADS': str(threads)}
    env['DP_INTER_OP_PARALLELISM_THREADS'] = '1'
    start = time.perf_counter()
    for command in (['dp', '--pt', 'train', 'input.json'], ['dp', '--pt', 'freeze', '-o', 'model.pth']):
        subprocess.run(command, cwd=folder, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def score(model: pathlib.Path, frames) -> dict:
    """Energy (meV/atom) and force (eV/Å) RMSE of ``model`` on ``frames``, and the energy RMSE after removing the
    mean per-atom offset."""
    from deepmd.calculator import DP

    calculator = DP(str(model))
    de, df = [], []
    for atoms in frames:
        reference_e, reference_f = atoms.get_potential_energy(), atoms.get_forces()
        test = atoms.copy()
        test.calc = calculator
        de.append((test.get_potential_energy() - reference_e) / len(atoms))
        df.append((test.get_forces() - reference_f).ravel())
    de, df = np.array(de), np.concatenate(df)
    return {
        'energy_rmse': float(np.sqrt(np.mean(de**2)) * 1000),
        'energy_rmse_shifted': float(np.std(de) * 1000),
        'force_rmse': float(np.sqrt(np.mean(df**2))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=pathlib.Path, default=FRAMES)
    parser.add_argument('--steps', type=int, default=2000)
    parser.add_argument('--recipes', default=','.join(recipes(1)))
    parser.add_argument('--test-fraction', type=float, default=0.15)
    parser.add_argument('--threads', type=int, default=os.cpu_count())
    parser.add_argument('-o', '--output', type=pathlib.Path, default=ROOT / 'benchmarks' / 'results')
    args = parser.parse_args()
    if not args.frames.is_file():
        raise SystemExit(f'{args.frames} is missing: give --frames FILE (extxyz with energies and forces)')

    import ase.io

    frames = ase.io.read(args.frames, index=':')
    rng = np.random.default_rng(0)
    order = rng.permutation(len(frames))
    n_test = max(round(args.test_fraction * len(frames)), 1)
    test = [frames[i] for i in order[:n_test]]
    training = [frames[i] for i in order[n_test:]]
    type_map = sorted({symbol for atoms in frames for symbol in atoms.get_chemical_symbols()})
    chosen = {name: recipes(args.steps)[name] for name in args.recipes.split(',')}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        systems = write_systems(training, pathlib.Path(tmp) / 'train', type_map)
        for name, recipe in chosen.items():
            folder = pathlib.Path(tmp) / name
            folder.mkdir()
            seconds = train(recipe, systems, type_map, folder, args.steps, args.threads)
            results[name] = {**score(folder / 'model.pth', test), 'train_s': round(seconds, 1), 'recipe': recipe}
            print(name, {key: value for key, value in results[name].items() if key != 'recipe'}, flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    report = {
        'frames': str(args.frames),
        'n_train': len(training),
        'n_test': len(test),
        'steps': args.steps,
        'threads': args.threads,
        'results': results,
    }
    (args.output / 'student_recipe.json').write_text(json.dumps(report, indent=1))
    lines = [
        f'# Student recipes: {len(training)} training and {len(test)} held-out frames of {args.frames.name}, '
        f'{args.steps} steps, {args.threads} threads',
        '',
        '| recipe | force RMSE (eV/Å) | energy RMSE (meV/atom) | after a constant shift | training (s) |',
        '|---|---|---|---|---|',
    ]
    for name, result in results.items():
        lines.append(
            f'| {name} | {result["force_rmse"]:.4f} | {result["energy_rmse"]:.1f} | '
            f'{result["energy_rmse_shifted"]:.1f} | {result["train_s"]:.0f} |'
        )
    (args.output / 'student_recipe.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
