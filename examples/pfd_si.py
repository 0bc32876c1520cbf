#!/usr/bin/env python
"""Crystalline Si by P→F→D: SevenNet-0 or DPA-4 (P), fine-tuned on pw.x frames by the PFD loop (F), distilled into a
compact se_atten_v2 student with ZBL repulsion (D), then validated on independent pw.x frames.

Run after ``aiida-pfd setup`` (the daemon must run); ``make demo`` does both::

    python examples/pfd_si.py [--profile pfd] [--foundation sevennet-0|dpa4] [--max-iterations N] [--no-distill]
                              [--no-validate]

DFT: Debian's Si.pbe-nl-rrkjus_psl.1.0.0.UPF at 30/240 Ry, cold smearing 0.01 Ry, k-point spacing 0.4 1/Å (the
``balanced`` labelling preset). The foundation is SevenNet-0 as shipped with ``sevenn`` or, with ``--foundation dpa4``,
the universal DPA-4 checkpoint fine-tuned by DeePMD-kit (``aiida-pfd models fetch dpa4-neo`` first; ``make demo
FOUNDATION=dpa4`` does it): neither has seen these DFT data. Exploration, in stages as the paper's Si run: the 8-atom
cubic and hexagonal diamond cells in NVT at 300-1000 K, then NPT at 300-1000 K and 0-1 GPa, a vacancy and an
interstitial at 1000 K, ±4 % strain, 1500 K and a heat-quench to 2500 K. Distillation: the fine-tuned model explores
both cells, a 2x1x1 cell with a vacancy and with an interstitial, strained cells and a heat-quench to 2000 K, and labels
1200 of the frames; a compact se_atten_v2 student with the ZBL repulsion blended in below 1.7 Å is trained on them from
scratch, evaluated on the DFT frames never trained on, run in MD (64 atoms, at the highest explored temperature and 1.2
x above it) and timed side by side with the teacher at 64 and 512 atoms. Validation (``pfd.validate``): foundation,
fine-tuned and distilled model on ``examples/data/si_reference.extxyz`` (independent pw.x frames by category, never
trained on) and their equation of state, elastic constants, phonons, vacancy energy and RDF beside pw.x's.
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import time

from aiida import load_profile, orm
from aiida.engine import submit
from ase.build import bulk

REFERENCE = pathlib.Path(__file__).resolve().parent / 'data' / 'si_reference.extxyz'
SERIAL = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
ONE_THREAD = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}

#: Fine-tuning loop (overrides of the `balanced` preset of protocols/pfd.yaml), staged as the paper's Si run: the
#: diamond and hexagonal-diamond cells first, then diamond under pressure and strain, with a vacancy and an
#: interstitial, hot and melted. Every DFT frame is of an 8-atom cell (7 and 9 with the defects): cheap in pw.x.
FINETUNING = {
    'perturbation': {'frames': 6, 'cell_fraction': 0.03, 'atom_displacement': 0.1},
    # 5 of the 12 initial frames and 3 of each iteration's 6 fresh ones are held out: the test set, never trained on.
    'test_fraction': 0.4,
    'exploration': {
        'stages': [
            [{'ensemble': 'nvt', 'temperatures': [300, 600, 1000], 'nsteps': 300, 'timestep': 2.0, 'sample_every': 30}],
            [
                {
                    'ensemble': 'npt',
                    'temperatures': [300, 1000],
                    'pressures': [1.0, 10000.0],
                    'nsteps': 300,
                    'timestep': 2.0,
                    'sample_every': 30,
                    'structures': ['si8'],
                },
                {
                    'temperatures': [1000],
                    'nsteps': 300,
                    'timestep': 2.0,
                    'sample_every': 30,
                    'defects': ['vacancy', 'interstitial'],
                    'structures': ['si8'],
                },
                {'temperatures': [600], 'nsteps': 300, 'timestep': 2.0, 'sample_every': 30, 'strains': [-0.04, 0.04]},
                {'temperatures': [1500], 'nsteps': 300, 'timestep': 2.0, 'sample_every': 30},
                {
                    'temperatures': [1500],
                    'peak_temperature': 2500,
                    'nsteps': 450,
                    'timestep': 2.0,
                    'sample_every': 30,
                    'structures': ['si8'],
                },
            ],
        ]
    },
    'selection': {'max_frames': 6, 'diversity': 'entropy', 'error_band': [0.03, 1.5]},
    'convergence': {'force_rmse': 0.06, 'energy_rmse': 0.003},
}

#: DPA-4 as P (`--foundation dpa4`): DeePMD fine-tuning (`dp --pt train --finetune`, the checkpoint's own model
#: section) at the learning rate where its pre-training ended (1e-4 scrambles its forces on a few frames), with
#: constant loss weights, batch 1, all cores. Measured on 8 pw.x frames of 8-atom Si, 30 steps: training force RMSE
#: 0.041 -> 0.014 eV/Å while frames it never saw stay at the zero-shot 0.05 eV/Å. 150 steps take 1 min on 2 cores.
#: At most 4 frames per iteration and 2 iterations (both exploration stages): at most 12 + 8 = 20 pw.x.
DPA4 = {
    'training': {
        # the foundation's energy zero shifted onto pw.x's first: the aligned zero-shot model scored beside the
        # fine-tuned one on the test frames and in the validation (fine-tuning refits the zero anyway)
        'align_energy': True,
        'parameters': {
            'deepmd': {
                'learning_rate': {'type': 'exp', 'start_lr': 1e-5, 'stop_lr': 3e-6, 'decay_steps': 30},
                'loss': {
                    'type': 'ener',
                    'start_pref_e': 1.0,
                    'limit_pref_e': 1.0,
                    'start_pref_f': 10.0,
                    'limit_pref_f': 10.0,
                    'start_pref_v': 0.0,
                    'limit_pref_v': 0.0,
                },
                'training': {'numb_steps': 150, 'disp_freq': 25, 'save_freq': 150, 'training_data': {'batch_size': 1}},
            }
        },
    },
    'selection': {**FINETUNING['selection'], 'max_frames': 4},
    'convergence': {'force_rmse': 0.03, 'energy_rmse': 0.002, 'max_iterations': 2},
}

#: The foundations `--foundation` offers: the name `ModelData.from_shipped` knows.
FOUNDATIONS = {'sevennet-0': 'sevennet-0', 'dpa4': 'dpa4-neo'}

#: Distillation (overrides of the `fast` preset of protocols/distill.yaml): the fine-tuned model explores more and
#: larger cells than the loop did, and labels 1200 of the frames.
_MD = {'timestep': 2.0, 'sample_every': 3}
DISTILLATION = {
    'exploration': {
        'stages': [
            [
                {'ensemble': 'nvt', 'temperatures': [300, 600, 1000], 'nsteps': 600, 'structures': ['si8'], **_MD},
                {'ensemble': 'nvt', 'temperatures': [300, 1000, 1500], 'nsteps': 450, 'structures': ['hex8'], **_MD},
                {
                    'ensemble': 'npt',
                    'temperatures': [300, 1000],
                    'pressures': [1.0, 10000.0],
                    'nsteps': 450,
                    'structures': ['si8'],
                    **_MD,
                },
                # point defects in a 2x1x1 cell, strained cells and a heat-quench: what users run MD on
                {
                    'temperatures': [1000],
                    'nsteps': 300,
                    'supercell': [2, 1, 1],
                    'defects': ['vacancy', 'interstitial'],
                    'structures': ['si8'],
                    **_MD,
                },
                {'temperatures': [600], 'nsteps': 300, 'strains': [-0.04, 0.04], 'structures': ['si8'], **_MD},
                {'temperatures': [300], 'peak_temperature': 2000, 'nsteps': 450, 'structures': ['si8'], **_MD},
            ]
        ]
    },
    'n_frames': 1200,
    'test_fraction': 0.1,
    'student': {
        'learning_rate': {'type': 'exp', 'start_lr': 0.002, 'stop_lr': 0.00002, 'decay_steps': 400},
        'loss': {'start_pref_v': 0.02, 'limit_pref_v': 1.0},
        'training': {'numb_steps': 6000, 'disp_freq': 400, 'save_freq': 6000},
    },
    'speed': {'sizes': [64, 512], 'steps': 5, 'warmup': 2},
}


def finetuning_overrides(args) -> dict:
    """The loop's overrides for the chosen foundation and the command line's step counts."""
    if args.foundation == 'dpa4':
        overrides = {**FINETUNING, **copy.deepcopy(DPA4)}
        if args.steps:
            training = overrides['training']['parameters']['deepmd']['training']
            training['numb_steps'] = training['save_freq'] = args.steps
    else:
        overrides = {
            **FINETUNING,
            'training': {'parameters': {'sevenn': {'train': {'epoch': args.epochs}}}},
            'convergence': {**FINETUNING['convergence'], 'max_iterations': 3},
        }
    if args.max_iterations:
        overrides['convergence']['max_iterations'] = args.max_iterations
    return overrides


def structures() -> dict:
    """The input structures: the cubic diamond cell and the hexagonal-diamond (lonsdaleite) cell, 8 atoms each."""
    return {
        'si8': orm.StructureData(ase=bulk('Si', 'diamond', a=5.43, cubic=True)),
        'hex8': orm.StructureData(ase=bulk('SiSi', 'wurtzite', a=3.84, c=6.34, orthorhombic=True)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--profile', default='pfd')
    parser.add_argument('--foundation', choices=sorted(FOUNDATIONS), default='sevennet-0', help='the universal model P')
    parser.add_argument('--max-iterations', type=int, help='fine-tuning iterations at most (3; DPA-4: 2)')
    parser.add_argument('--epochs', type=int, default=60, help='SevenNet fine-tuning epochs per fine-tuning')
    parser.add_argument('--steps', type=int, help='DeePMD fine-tuning steps per fine-tuning (DPA-4: 150)')
    parser.add_argument('--student-steps', type=int, default=6000, help='training steps of the distilled model')
    parser.add_argument('--no-distill', action='store_true', help='stop after fine-tuning (P→F only)')
    parser.add_argument('--no-validate', action='store_true', help='skip the validation on independent pw.x frames')
    args = parser.parse_args()

    load_profile(args.profile)
    from aiida_pfd.data import ModelData
    from aiida_pfd.progress import follow
    from aiida_pfd.summary import print_summary
    from aiida_pfd.workflows.pfd import PFDWorkChain

    start = time.time()
    inputs = structures()
    foundation = ModelData.from_shipped(FOUNDATIONS[args.foundation]).store()
    overrides = finetuning_overrides(args)
    distill = None
    if not args.no_distill:
        student = {**DISTILLATION['student'], 'training': {**DISTILLATION['student']['training']}}
        student['training']['numb_steps'] = student['training']['save_freq'] = args.student_steps
        distill = {
            'protocol': 'fast',
            'overrides': {**DISTILLATION, 'student': student},
            'student': 'se_atten_v2_compact',
            # The MD jobs and the evaluations run side by side: one thread each, so that they do not oversubscribe.
            'options': {kind: {'environment_variables': ONE_THREAD} for kind in ('md', 'evaluate', 'stability')},
        }
    builder = PFDWorkChain.get_builder_from_protocol(
        codes={'pw': 'pw@localhost', 'python': 'python@localhost', 'dp': 'dp@localhost'},
        structures=inputs,
        foundation_model=foundation,
        protocol='balanced',
        overrides=overrides,
        # One MPI process per pw.x: the frames of an iteration run side by side, so the cores are used either way,
        # and serial runs do not spin waiting on each other.
        dft_overrides={
            'pw': {'metadata': {'options': {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}}}
        },
        distill=distill,
    )
    # The loop's MD jobs and evaluations run side by side too (a thread each); its fine-tuning runs alone, on all cores.
    builder.options = orm.Dict({kind: {'environment_variables': ONE_THREAD} for kind in ('md', 'evaluate')})
    node = submit(builder)
    print(f'Submitted PFDWorkChain<{node.pk}>; `verdi process status {node.pk}` shows its jobs per iteration.')
    follow(node, poll=10, children=('DistillWorkChain',), heartbeat=120)
    ok = node.exit_status in (0, PFDWorkChain.exit_codes.ERROR_NOT_CONVERGED.status)
    validation = None
    if ok and not args.no_validate and REFERENCE.is_file():
        validation = validate(node, inputs['si8'])
    print_summary(node, wall_time=time.time() - start)
    if validation is not None:
        from aiida_pfd.summary import validation_text

        print(f'\nValidationWorkChain<{validation.pk}> exit {validation.exit_status}')
        if 'table' in validation.outputs:
            print(validation_text(validation.outputs.table.get_dict()))
        ok = ok and validation.is_finished_ok
    return 0 if ok else 1


def validate(node, structure):
    """Foundation (energy zero aligned), fine-tuned and distilled model on the independent pw.x frames, and their
    properties beside pw.x's."""
    from aiida_pfd.progress import follow
    from aiida_pfd.reference import load_reference
    from aiida_pfd.workflows.validate import ValidationWorkChain

    models = {'fine_tuned': node.outputs.model}
    if 'aligned_foundation' in node.outputs:
        models = {'foundation': node.outputs.aligned_foundation, **models}
    if 'distill' in node.outputs and 'model' in node.outputs.distill:
        models['distilled'] = node.outputs.distill.model
    builder = ValidationWorkChain.get_builder()
    builder.models = models
    builder.structure = structure
    builder.code = orm.load_code('python@localhost')
    builder.reference = load_reference(REFERENCE, type_map=['Si'])
    builder.teacher = orm.Str('fine_tuned')
    if 'distilled' in models:
        builder.student = orm.Str('distilled')
    builder.parameters = orm.Dict({'rdf': {'temperature': 1000.0, 'time': 0.5}})
    builder.options = orm.Dict({'environment_variables': ONE_THREAD})
    validation = submit(builder)
    print(f'Submitted ValidationWorkChain<{validation.pk}> on {REFERENCE.name}')
    follow(validation, poll=10, heartbeat=120)
    return validation


if __name__ == '__main__':
    raise SystemExit(main())
