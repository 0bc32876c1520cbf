"""Tiny DeePMD models and EMT-labelled frames for tests and examples: built offline in seconds."""

from __future__ import annotations

import json
import pathlib

import numpy as np


def emt_frames(symbol: str = 'Cu', n_frames: int = 12, rattle: float = 0.05, seed: int = 0, size=(1, 1, 1)):
    """Rattled cubic fcc cells of ``symbol`` labelled with ASE's EMT (energy, forces, stress)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n_frames):
        atoms = bulk(symbol, 'fcc', cubic=True).repeat(size)
        atoms.set_cell(atoms.cell * (1 + rng.uniform(-0.02, 0.02)), scale_atoms=True)
        atoms.positions += rng.normal(0.0, rattle, atoms.positions.shape)
        atoms.calc = EMT()
        results = {'energy': atoms.get_potential_energy(), 'forces': atoms.get_forces(), 'stress': atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    return frames


def tiny_se_e2_a_input(type_map: list[str], systems: list[str], numb_steps: int = 20, seed: int = 1) -> dict:
    """A DeePMD input.json for a very small se_e2_a model (fast on one CPU core)."""
    return {
        'model': {
            'type_map': list(type_map),
            'descriptor': {
                'type': 'se_e2_a',
                'rcut': 4.5,
                'rcut_smth': 0.5,
                'sel': [40] * len(type_map),
                'neuron': [4, 8],
                'axis_neuron': 4,
                'seed': seed,
            },
            'fitting_net': {'neuron': [8, 8], 'seed': seed},
        },
        'learning_rate': {'type': 'exp', 'start_lr': 1e-3, 'stop_lr': 1e-4, 'decay_steps': 10},
        'loss': {
            'type': 'ener',
            'start_pref_e': 0.02,
            'limit_pref_e': 1,
            'start_pref_f': 1000,
            'limit_pref_f': 1,
            'start_pref_v': 0,
            'limit_pref_v': 0,
        },
        'training': {
            'training_data': {'systems': systems, 'batch_size': 1},
            'numb_steps': numb_steps,
            'disp_freq': max(1, numb_steps // 4),
            'save_freq': numb_steps,
            'seed': seed,
        },
    }


def train_tiny_model(
    workdir: pathlib.Path, frames, type_map: list[str], numb_steps: int = 20
) -> dict[str, pathlib.Path]:
    """Train and freeze a tiny se_e2_a model on ``frames``; return ``{'checkpoint': ..., 'frozen': ...}``."""
    from ..data.dataset import npy_system_dirs
    from ..scripts.common import write_frames
    from .foundation import run_dp

    workdir = pathlib.Path(workdir)
    write_frames(frames, workdir / 'data', type_map)
    systems = [str(path.relative_to(workdir)) for path in npy_system_dirs(workdir / 'data')]
    (workdir / 'input.json').write_text(json.dumps(tiny_se_e2_a_input(type_map, systems, numb_steps)))
    run_dp(['--pt', 'train', 'input.json'], workdir, 'train.log')
    run_dp(['--pt', 'freeze', '-o', 'frozen.pth'], workdir, 'freeze.log')
    return {'checkpoint': (workdir / 'model.ckpt.pt').resolve(), 'frozen': workdir / 'frozen.pth'}
