"""Build a tiny multi-task DeePMD-kit (PyTorch backend) DPA-3 "foundation" checkpoint, entirely offline.

The checkpoint stands in for a real pre-trained foundation model (e.g. DPA-3.1-3M) in tests: two branches
(``EMT_Al`` and ``EMT_Cu``) share one small DPA-3 descriptor and each have their own fitting net. Training data
is generated on the fly with ASE's EMT calculator and written as ``deepmd/npy`` through dpdata. The model's
``type_map`` is the full ``type_map`` argument for every branch, so it may contain elements (by default ``Si``)
the foundation never saw in training, as a real fine-tuning target would be.

Requires the optional ``deepmd-kit`` (PyTorch backend), ``ase`` and ``dpdata`` packages.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Sequence

__all__ = (
    'BRANCHES',
    'build_tiny_multitask_checkpoint',
    'dp_command',
    'dp_environment',
    'run_dp',
    'tiny_multitask_input',
)

#: Branch (head) names of the tiny foundation model, and the EMT element each is trained on.
BRANCHES = {'EMT_Al': 'Al', 'EMT_Cu': 'Cu'}

#: Lattice constants (Angstrom) of the fcc crystals used as training structures.
_FCC_LATTICE = {'Al': 4.05, 'Cu': 3.61}

_LOG_TAIL_CHARS = 4000


def dp_command() -> list[str]:
    """Return the command prefix that runs DeePMD-kit's ``dp`` entry point of the current interpreter."""
    candidate = pathlib.Path(sys.executable).parent / 'dp'
    if candidate.is_file():
        return [str(candidate)]
    found = shutil.which('dp')
    if found:
        return [found]
    return [sys.executable, '-m', 'deepmd']


def dp_environment(threads: int = 2) -> dict[str, str]:
    """Return a copy of ``os.environ`` that keeps DeePMD-kit small and CPU-only.

    :param threads: number of intra-op threads for PyTorch (the machine has only a few cores).
    """
    env = dict(os.environ)
    env.update(
        {
            'OMP_NUM_THREADS': '1',
            'DP_INTRA_OP_PARALLELISM_THREADS': str(threads),
            'DP_INTER_OP_PARALLELISM_THREADS': '1',
            'CUDA_VISIBLE_DEVICES': '',
            'DP_INFER_BATCH_SIZE': env.get('DP_INFER_BATCH_SIZE', '1024'),
            'TF_CPP_MIN_LOG_LEVEL': '3',
        }
    )
    return env


def _generate_emt_data(directory: pathlib.Path, element: str, nframes: int, rng) -> pathlib.Path:
    """Write ``nframes`` rattled fcc ``element`` supercells labelled with EMT as a ``deepmd/npy`` system."""
    import dpdata
    from ase.build import bulk
    from ase.calculators.emt import EMT

    system = None
    for _ in range(nframes):
        atoms = bulk(element, 'fcc', a=_FCC_LATTICE[element], cubic=True)  # 4 atoms
        atoms = atoms.repeat((2, 1, 1))  # 8 atoms
        strain = 1.0 + rng.uniform(-0.03, 0.03)
        atoms.set_cell(atoms.cell * strain, scale_atoms=True)
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        atoms.calc = EMT()
        frame = dpdata.LabeledSystem(atoms, fmt='ase/structure')
        if system is None:
            system = frame
        else:
            system.append(frame)
    target = directory / element
    system.to('deepmd/npy', str(target))
    return target


def tiny_multitask_input(
    type_map: list[str], systems: dict[str, str], numb_steps: int, seed: int, sizes: dict | None = None
) -> dict:
    """Return the ``input.json`` of the tiny multi-task DPA-3 pre-training.

    :param type_map: the type map shared by all branches.
    :param systems: mapping of branch name onto its training ``deepmd/npy`` system path (relative to the cwd of dp).
    :param numb_steps: number of training steps.
    :param seed: random seed of descriptor, fitting nets and training.
    :param sizes: overrides of the DPA-3 ``repflow`` settings (``n_dim``, ``nlayers``, ``a_rcut``...) and
        ``fitting_neuron`` (the fitting nets' layer widths), for a larger stand-in foundation.
    """
    sizes = dict(sizes or {})
    fitting_neuron = sizes.pop('fitting_neuron', [16, 16])
    descriptor = {
        'type': 'dpa3',
        'repflow': {
            'n_dim': 16,
            'e_dim': 8,
            'a_dim': 4,
            'nlayers': 1,
            'e_rcut': 5.0,
            'e_rcut_smth': 4.5,
            'e_sel': 48,
            'a_rcut': 3.5,
            'a_rcut_smth': 3.0,
            'a_sel': 16,
            'axis_neuron': 4,
            'update_angle': True,
            'update_style': 'res_residual',
            'update_residual': 0.1,
            'update_residual_init': 'const',
            'smooth_edge_update': True,
            **sizes,
        },
        'activation_function': 'silu',
        'use_tebd_bias': False,
        'precision': 'float32',
        'concat_output_tebd': False,
        'seed': seed,
    }
    model_dict = {}
    loss_dict = {}
    data_dict = {}
    for index, (branch, path) in enumerate(systems.items()):
        model_dict[branch] = {
            'type_map': 'type_map',
            'descriptor': 'dpa3_descriptor',
            'fitting_net': {
                'neuron': list(fitting_neuron),
                'activation_function': 'silu',
                'resnet_dt': True,
                'precision': 'float32',
                'seed': seed + 1 + index,
            },
        }
        loss_dict[branch] = {
            'type': 'ener',
            'start_pref_e': 0.2,
            'limit_pref_e': 20,
            'start_pref_f': 100,
            'limit_pref_f': 20,
            'start_pref_v': 0.0,
            'limit_pref_v': 0.0,
        }
        data_dict[branch] = {
            'training_data': {'systems': [path], 'batch_size': 1},
        }
    return {
        'model': {
            'shared_dict': {'type_map': list(type_map), 'dpa3_descriptor': descriptor},
            'model_dict': model_dict,
        },
        'learning_rate': {'type': 'exp', 'decay_steps': max(1, numb_steps // 4), 'start_lr': 1e-3, 'stop_lr': 1e-4},
        'optimizer': {'type': 'Adam'},
        'loss_dict': loss_dict,
        'training': {
            'model_prob': {branch: 1.0 for branch in systems},
            'data_dict': data_dict,
            'numb_steps': numb_steps,
            'seed': seed,
            'disp_file': 'lcurve.out',
            'disp_freq': max(1, numb_steps // 4),
            'save_freq': numb_steps,
            'save_ckpt': 'model.ckpt',
        },
    }


def run_dp(args: list[str], workdir: pathlib.Path, log_name: str) -> None:
    """Run ``dp <args>`` in ``workdir``, logging to ``workdir/log_name``; raise ``RuntimeError`` with the log tail."""
    log_path = workdir / log_name
    with log_path.open('w') as handle:
        try:
            subprocess.run(
                [*dp_command(), *args],
                cwd=workdir,
                env=dp_environment(),
                stdout=handle,
                stderr=subprocess.STDOUT,
                check=True,
            )
        except (subprocess.CalledProcessError, OSError) as exception:
            handle.flush()
            tail = log_path.read_text(errors='replace')[-_LOG_TAIL_CHARS:]
            raise RuntimeError(f'`dp {" ".join(args)}` failed in {workdir}: {exception}\n{tail}') from exception


def build_tiny_multitask_checkpoint(
    workdir: pathlib.Path,
    type_map: Sequence[str] = ('Al', 'Cu', 'Si'),
    numb_steps: int = 20,
    seed: int = 1,
    sizes: dict | None = None,
) -> pathlib.Path:
    """Train a tiny multi-task DPA-3 model offline and return the path of its checkpoint ``multitask.pt``.

    Two branches, ``EMT_Al`` and ``EMT_Cu``, share one DPA-3 descriptor and have their own fitting nets. Each is
    trained on ~12 frames of rattled, strained 8-atom fcc supercells labelled with ASE's EMT. Takes roughly 10-20 s
    on two CPU cores.

    :param workdir: directory to build in (created if missing); it receives the data, ``input.json``, the dp log
        ``train.log`` and the checkpoint.
    :param type_map: the model's type map, for every branch; must contain ``Al`` and ``Cu``, and may (by default it
        does) contain elements never seen in training.
    :param numb_steps: number of training steps.
    :param seed: seed of the structure generation, the network initialisation and the training.
    :param sizes: larger descriptor/fitting sizes, see :func:`tiny_multitask_input`.
    :return: absolute path of ``workdir/multitask.pt``, a real file (not a symlink) holding the final checkpoint.
    :raises RuntimeError: if ``dp --pt train`` fails; the message contains the tail of its log.
    """
    import numpy as np

    type_map = list(type_map)
    missing = [element for element in BRANCHES.values() if element not in type_map]
    if missing:
        raise ValueError(f'type_map {type_map} must contain the training elements {missing}')

    workdir = pathlib.Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / 'data'
    data_dir.mkdir(exist_ok=True)

    rng = np.random.default_rng(seed)
    systems = {}
    for branch, element in BRANCHES.items():
        path = _generate_emt_data(data_dir, element, nframes=12, rng=rng)
        systems[branch] = str(path.relative_to(workdir))

    config = tiny_multitask_input(type_map, systems, numb_steps=numb_steps, seed=seed, sizes=sizes)
    (workdir / 'input.json').write_text(json.dumps(config, indent=2))

    run_dp(['--pt', 'train', 'input.json'], workdir, 'train.log')

    checkpoint = workdir / 'model.ckpt.pt'
    if not checkpoint.exists():
        candidates = sorted(workdir.glob('model.ckpt-*.pt'), key=lambda p: p.stat().st_mtime)
        if not candidates:
            tail = (workdir / 'train.log').read_text(errors='replace')[-_LOG_TAIL_CHARS:]
            raise RuntimeError(f'`dp --pt train` wrote no checkpoint in {workdir}\n{tail}')
        checkpoint = candidates[-1]
    target = workdir / 'multitask.pt'
    shutil.copyfile(checkpoint.resolve(), target)
    return target
