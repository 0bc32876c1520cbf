"""Fine-tune the universal SevenNet-0 on 40 DFT frames of silicon, offline, and compare it with the zero-shot model.

Frames come from the PFD paper's silicon set (VASP, energies and forces). A seeded random choice gives 40 training
frames, 10 validation frames (sevenn keeps the checkpoint with the lowest validation loss) and 200 test frames, all
disjoint. Every step is an AiiDA process in the profile's provenance graph: ``pfd.sevenn.train`` fine-tunes,
``pfd.evaluate`` compares each model with the test frames.

VASP and SevenNet-0 (trained on Materials Project relaxations) do not share an energy zero, so the zero-shot energy
RMSE is also given after removing the mean per-atom energy offset; fine-tuning learns the offset, so its RMSE is raw.

Run it with a profile that has the ``python@localhost`` code (``aiida-pfd setup``)::

    python examples/finetune_sevennet_si.py --profile pfd --epochs 30
"""

from __future__ import annotations

import argparse
import itertools
import pathlib
import re
import time

import numpy as np

DATA = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'pfd-paper' / 'Si_train.extxyz'


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', type=pathlib.Path, default=DATA, help='extended XYZ with energies and forces')
    parser.add_argument('--profile', default=None, help='AiiDA profile (default: the default profile)')
    parser.add_argument('--code', default='python@localhost', help='the `python` code that runs sevenn and scripts')
    parser.add_argument('--n-train', type=int, default=40)
    parser.add_argument('--n-valid', type=int, default=10)
    parser.add_argument('--n-test', type=int, default=200)
    parser.add_argument('--epochs', type=int, default=30)
    parser.add_argument('--seed', type=int, default=0, help='seed of the frame choice')
    return parser.parse_args()


def split_frames(path: pathlib.Path, sizes: tuple[int, ...], seed: int) -> list[list]:
    """Disjoint random subsets of the frames of ``path`` with the given sizes."""
    from ase.io import read

    frames = read(path, index=':')
    if sum(sizes) > len(frames):
        raise SystemExit(f'{path} has {len(frames)} frames, fewer than the {sum(sizes)} asked for.')
    order = np.random.default_rng(seed).permutation(len(frames))
    bounds = np.cumsum([0, *sizes])
    return [[frames[i] for i in order[start:stop]] for start, stop in itertools.pairwise(bounds)]


def evaluate(code, model, reference) -> dict:
    """Run ``pfd.evaluate``; return RMSEs, with the energy RMSE also after removing the mean per-atom offset."""
    from aiida.engine import run_get_node
    from aiida.plugins import CalculationFactory

    builder = CalculationFactory('pfd.evaluate').get_builder()
    builder.code = code
    builder.model = model
    builder.reference = reference
    builder.metadata.label = f'evaluate {model.filename}'
    results, node = run_get_node(builder)
    if not node.is_finished_ok:
        raise SystemExit(f'pfd.evaluate<{node.pk}> failed: [{node.exit_status}] {node.exit_message}')
    metrics = results['metrics'].get_dict()
    error = results['errors'].get_array('energy_per_atom_error')
    return {
        'energy_rmse': metrics['energy_rmse_per_atom'],
        'energy_offset': float(error.mean()),
        'energy_rmse_shifted': float(np.sqrt(np.mean((error - error.mean()) ** 2))),
        'force_rmse': metrics['force_rmse'],
        'pk': node.pk,
    }


def main():
    from aiida import load_profile, orm

    args = parse_arguments()
    load_profile(args.profile)

    from aiida.engine import run_get_node
    from aiida.plugins import CalculationFactory

    from aiida_pfd.data import LabeledDataset, ModelData

    start = time.perf_counter()
    code = orm.load_code(args.code)
    train, valid, test = (
        LabeledDataset.from_ase(frames).store()
        for frames in split_frames(args.data, (args.n_train, args.n_valid, args.n_test), args.seed)
    )
    foundation = ModelData.from_shipped('sevennet-0').store()
    print(f'frames from {args.data}: {train.n_frames} train, {valid.n_frames} validation, {test.n_frames} test')

    zero_shot = evaluate(code, foundation, test)

    builder = CalculationFactory('pfd.sevenn.train').get_builder()
    builder.code = code
    builder.finetune_from = foundation
    builder.training_set = train
    builder.validation_set = valid
    # sevenn's keys. A trainable shift and scale let the model take up the energy zero of the DFT reference and a
    # global force scale (universal models tend to be too soft) in a few steps.
    builder.parameters = orm.Dict({'train': {'epoch': args.epochs}, 'model': {'train_shift_scale': True}})
    builder.metadata.label = 'fine-tune SevenNet-0 on Si'
    train_start = time.perf_counter()
    results, node = run_get_node(builder)
    train_wall = time.perf_counter() - train_start
    if not node.is_finished_ok:
        raise SystemExit(f'pfd.sevenn.train<{node.pk}> failed: [{node.exit_status}] {node.exit_message}')
    log = node.outputs.retrieved.base.repository.get_object_content('log.sevenn')
    epoch_seconds = [_seconds(match) for match in re.findall(r'Epoch \d+ elapsed: (\S+)', log)]
    metrics = results['metrics'].get_dict()

    fine_tuned = evaluate(code, results['model'], test)
    wall = time.perf_counter() - start

    print(
        f'\nSevenNet-0 on {test.n_frames} test frames of Si (pfd.evaluate: zero-shot <{zero_shot["pk"]}>, '
        f'fine-tuned <{fine_tuned["pk"]}>)'
    )
    print(f'{"":34}{"energy RMSE (meV/atom)":>24}{"force RMSE (eV/Å)":>20}')
    print(
        f'{"zero-shot, raw":34}{1000 * zero_shot["energy_rmse"]:>24.1f}{zero_shot["force_rmse"]:>20.3f}\n'
        f'{"zero-shot, mean offset removed*":34}{1000 * zero_shot["energy_rmse_shifted"]:>24.1f}'
        f'{zero_shot["force_rmse"]:>20.3f}\n'
        f'{"fine-tuned, raw":34}{1000 * fine_tuned["energy_rmse"]:>24.1f}{fine_tuned["force_rmse"]:>20.3f}'
    )
    print(
        f'* zero-shot energies are shifted by their mean per-atom offset to the DFT reference '
        f'({1000 * zero_shot["energy_offset"]:+.1f} meV/atom) before the RMSE: the two have different energy zeros.'
    )
    print(
        f'\nfine-tuning: pfd.sevenn.train<{node.pk}>, {args.epochs} epochs on {train.n_frames} frames, model = '
        f'{metrics["model_file"]} (epoch {metrics["model_epoch"]}), {train_wall:.0f} s wall, '
        f'{np.median(epoch_seconds):.1f} s per epoch (median; mean {np.mean(epoch_seconds):.1f} s; sevenn log)'
    )
    print(f'total wall time: {wall:.0f} s')


def _seconds(elapsed: str) -> float:
    hours, minutes, seconds = elapsed.split(':')
    return 3600 * int(hours) + 60 * int(minutes) + float(seconds)


if __name__ == '__main__':
    main()
