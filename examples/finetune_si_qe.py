#!/usr/bin/env python
"""Fine-tune a multi-task DeePMD checkpoint on the 573 QE-labelled Si frames and evaluate it on held-out frames.

Runs ``pfd.deepmd.train`` (``dp --pt train --finetune``) and ``pfd.evaluate`` through AiiDA on the ``pfd`` profile
(``aiida-pfd setup``), with the provenance kept: the split, the training job, the model and the evaluation::

    python examples/finetune_si_qe.py --data ../shared/data/si-qe-workshop \\
        [--foundation DPA-3.1-3M.pt --branch Omat24] [--steps 500]

Without ``--foundation`` it builds an offline multi-task DPA-3 stand-in (two EMT branches, Al and Cu; it never saw
Si, and its pre-training is a few steps): it shows the mechanics and provenance, not the accuracy of a real universal
model. With a downloaded checkpoint (``dp pretrained download ...``) pass ``--foundation`` and ``--branch``.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

from aiida import load_profile, orm
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory

#: DPA-3 sizes of the offline stand-in foundation: `tiny` is the test suite's (4 k parameters); `small` has the
#: capacity to learn Si (3 layers, angular cutoff past the second neighbour shell).
STAND_IN_SIZES = {
    'tiny': {},
    'small': {
        'n_dim': 64,
        'e_dim': 32,
        'a_dim': 16,
        'nlayers': 3,
        'e_sel': 64,
        'a_rcut': 4.0,
        'a_rcut_smth': 3.5,
        'a_sel': 24,
        'fitting_neuron': [64, 64],
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', type=pathlib.Path, default=pathlib.Path('../shared/data/si-qe-workshop'))
    parser.add_argument('--foundation', type=pathlib.Path, help='multi-task DeePMD checkpoint (.pt)')
    parser.add_argument('--branch', default='EMT_Cu', help='branch of the checkpoint to fine-tune')
    parser.add_argument(
        '--stand-in-size',
        choices=sorted(STAND_IN_SIZES),
        default='small',
        help='size of the offline stand-in foundation built when no --foundation is given',
    )
    parser.add_argument('--steps', type=int, default=500)
    parser.add_argument('--test-fraction', type=float, default=0.2)
    parser.add_argument('--seed', type=int, default=42)
    parser.add_argument('--profile', default='pfd')
    args = parser.parse_args()

    load_profile(args.profile)
    from aiida_pfd.data import LabeledDataset, ModelData
    from aiida_pfd.data.operations import split_dataset

    if not args.data.is_dir():
        parser.error(f'{args.data} does not exist: pass --data with the deepmd/npy Si frames.')
    start = time.perf_counter()

    foundation_file = args.foundation
    if foundation_file is None:
        from aiida_pfd.testing.foundation import build_tiny_multitask_checkpoint

        print(f'No --foundation given: building a {args.stand_in_size} offline multi-task DPA-3 stand-in (EMT Al/Cu).')
        foundation_file = build_tiny_multitask_checkpoint(
            pathlib.Path(tempfile.mkdtemp(prefix='pfd-foundation-')), sizes=STAND_IN_SIZES[args.stand_in_size]
        )
    foundation = ModelData(foundation_file).store()
    print(f'Foundation {foundation_file.name}: branches {foundation.heads}, type map of {len(foundation.type_map)}')

    dataset = LabeledDataset.from_deepmd_npy(args.data, type_map=['Si']).store()
    parts = split_dataset(dataset, orm.Float(args.test_fraction), orm.Int(args.seed))
    print(
        f'Dataset<{dataset.pk}>: {dataset.n_frames} frames -> train {parts["train"].n_frames}, '
        f'test {parts["test"].n_frames}'
    )

    parameters = {
        'learning_rate': {'type': 'exp', 'start_lr': 1e-3, 'stop_lr': 1e-4, 'decay_steps': max(args.steps // 10, 1)},
        'loss': {
            'type': 'ener',
            'start_pref_e': 0.02,
            'limit_pref_e': 1,
            'start_pref_f': 1000,
            'limit_pref_f': 1,
            'start_pref_v': 0.0,
            'limit_pref_v': 0.0,
        },
        'training': {
            'numb_steps': args.steps,
            'disp_freq': max(args.steps // 10, 1),
            'save_freq': args.steps,
            'seed': args.seed,
            'training_data': {'batch_size': 1},
        },
    }
    train = CalculationFactory('pfd.deepmd.train').get_builder()
    train.code = orm.load_code('dp@localhost')
    train.training_set = parts['train']
    train.finetune_from = foundation
    train.model_branch = orm.Str(args.branch)
    train.settings = orm.Dict({'use_pretrain_script': True})
    train.parameters = orm.Dict(parameters)
    train.metadata.options.max_wallclock_seconds = 4 * 3600
    t_train = time.perf_counter()
    trained, node = run_get_node(train)
    t_train = time.perf_counter() - t_train
    if not node.is_finished_ok:
        print(f'Training failed: DeepmdTrainCalculation<{node.pk}> [{node.exit_status}] {node.exit_message}')
        return 1
    print(f'DeepmdTrainCalculation<{node.pk}>: {args.steps} steps in {t_train:.0f} s')

    evaluate = CalculationFactory('pfd.evaluate').get_builder()
    evaluate.code = orm.load_code('python@localhost')
    evaluate.model = trained['model']
    evaluate.reference = parts['test']
    evaluated, node = run_get_node(evaluate)
    if not node.is_finished_ok:
        print(f'Evaluation failed: EvaluateCalculation<{node.pk}> [{node.exit_status}] {node.exit_message}')
        return 1
    metrics = evaluated['metrics'].get_dict()
    print(f'\nFine-tuned model {trained["model"].pk} on {parts["test"].n_frames} held-out QE frames:')
    print(f'  energy RMSE {metrics["energy_rmse_per_atom"] * 1000:.2f} meV/atom')
    print(f'  force RMSE  {metrics["force_rmse"]:.4f} eV/Å')
    print(f'Wall time {time.perf_counter() - start:.0f} s')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
