#!/usr/bin/env python
"""Distil SevenNet-0 on Si with the demo's distillation settings and check the student: MD stability at 512 atoms and
errors per category on ``examples/data/si_reference.extxyz`` beside its teacher's.

SevenNet-0 stands in for the fine-tuned teacher (no DFT loop runs here), so the figures measure the distillation
alone: student vs teacher, per category. Run with the profile's daemon running::

    python benchmarks/si_reference/distill_check.py --profile pfd [--student-steps 6000] [--nvt-time 2.0]
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def demo_module():
    spec = importlib.util.spec_from_file_location('pfd_si', ROOT / 'examples' / 'pfd_si.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--profile', default='pfd')
    parser.add_argument('--student-steps', type=int, default=6000)
    parser.add_argument('--nvt-time', type=float, default=2.0, help='ps of NVT per temperature in the MD test')
    parser.add_argument('--min-atoms', type=int, default=512)
    args = parser.parse_args()

    from aiida import load_profile, orm

    load_profile(args.profile)
    from aiida.engine import submit
    from ase.build import bulk

    from aiida_pfd.data import ModelData
    from aiida_pfd.progress import follow
    from aiida_pfd.reference import load_reference
    from aiida_pfd.summary import validation_text
    from aiida_pfd.workflows.distill import DistillWorkChain
    from aiida_pfd.workflows.validate import ValidationWorkChain

    demo = demo_module()
    start = time.time()
    teacher = ModelData.from_shipped('sevennet-0').store()
    structure = orm.StructureData(ase=bulk('Si', 'diamond', a=5.43, cubic=True))
    overrides = {**demo.DISTILLATION, 'student': {**demo.DISTILLATION['student']}}
    overrides['student']['training'] = {
        **overrides['student']['training'],
        'numb_steps': args.student_steps,
        'save_freq': args.student_steps,
    }
    overrides['stability'] = {
        'min_atoms': args.min_atoms,
        'nvt_time': args.nvt_time,
        'nve_time': 0.5,
        'equilibration': min(1.0, args.nvt_time / 2),
    }
    builder = DistillWorkChain.get_builder_from_protocol(
        codes={'python': 'python@localhost', 'dp': 'dp@localhost'},
        teacher=teacher,
        structures={'si8': structure},
        protocol='fast',
        overrides=overrides,
        student='se_atten_v2_compact',
    )
    builder.options = orm.Dict({kind: {'environment_variables': demo.ONE_THREAD} for kind in ('md', 'evaluate')})
    node = submit(builder)
    print(f'DistillWorkChain<{node.pk}>')
    follow(node, poll=10, heartbeat=120)
    print(f'distillation: exit {node.exit_status} {node.exit_message or ""} after {(time.time() - start) / 60:.1f} min')
    if 'model' not in node.outputs:
        return 1
    reference = demo.REFERENCE
    if not reference.is_file():
        print(f'{reference} is absent: no validation')
        return 0
    validation = ValidationWorkChain.get_builder()
    validation.models = {'teacher': teacher, 'student': node.outputs.model}
    validation.structure = structure
    validation.code = orm.load_code('python@localhost')
    validation.reference = load_reference(reference, type_map=['Si'])
    validation.teacher, validation.student = orm.Str('teacher'), orm.Str('student')
    validation.parameters = orm.Dict({'rdf': {'temperature': 1000.0, 'time': 0.5}})
    validation.options = orm.Dict({'environment_variables': demo.ONE_THREAD})
    check = submit(validation)
    print(f'ValidationWorkChain<{check.pk}>')
    follow(check, poll=10, heartbeat=120)
    if 'table' in check.outputs:
        print(validation_text(check.outputs.table.get_dict()))
    print(f'total {(time.time() - start) / 60:.1f} min')
    return 0 if node.is_finished_ok and check.is_finished_ok else 1


if __name__ == '__main__':
    raise SystemExit(main())
