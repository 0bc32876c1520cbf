#!/usr/bin/env python
"""Long MD test of a Si model: ``pfd.stability`` at each temperature side by side, one job per temperature.

By default the distilled model of the newest finished PFD run with a distillation (``--workflow PK`` picks one,
``--model PK`` any model): NVT at 1000 and 1200 K for 10 ps in the 4x4x4 diamond supercell (512 atoms), then 2 ps NVE,
with the checks of :mod:`aiida_pfd.calculations.stability`. Run with the profile's daemon running::

    python benchmarks/si_reference/stability_check.py --profile pfd [--temperatures 1000 1200] [--nvt-time 10]
"""

from __future__ import annotations

import argparse
import time


def distilled_model(orm, workflow: int | None):
    """The distilled model of PFD run ``workflow``, or of the newest finished one that has it."""
    if workflow is not None:
        return orm.load_node(workflow).outputs.distill.model
    query = orm.QueryBuilder().append(
        orm.WorkflowNode, filters={'attributes.process_label': 'PFDWorkChain'}, tag='pfd', project='*'
    )
    query.order_by({'pfd': {'ctime': 'desc'}})
    for (node,) in query.iterall():
        if 'distill' in node.outputs and 'model' in node.outputs.distill:
            return node.outputs.distill.model
    raise SystemExit('no PFD run with a distilled model in this profile: give --model PK')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--profile', default='pfd')
    parser.add_argument('--workflow', type=int, help='PK of a PFDWorkChain whose distilled model to test')
    parser.add_argument('--model', type=int, help='PK of any model to test (instead of a distilled one)')
    parser.add_argument('--temperatures', type=float, nargs='+', default=[1000.0, 1200.0])
    parser.add_argument('--nvt-time', type=float, default=10.0, help='ps of NVT per temperature')
    parser.add_argument('--nve-time', type=float, default=2.0, help='ps of NVE after the NVT')
    parser.add_argument('--min-atoms', type=int, default=512)
    args = parser.parse_args()

    from aiida import load_profile, orm

    load_profile(args.profile)
    from aiida.engine import submit
    from ase.build import bulk

    from aiida_pfd.calculations.stability import StabilityCalculation

    model = orm.load_node(args.model) if args.model is not None else distilled_model(orm, args.workflow)
    structure = orm.StructureData(ase=bulk('Si', 'diamond', a=5.43, cubic=True))
    start = time.time()
    jobs = []
    for temperature in args.temperatures:
        builder = StabilityCalculation.get_builder()
        builder.code = orm.load_code('python@localhost')
        builder.model = model
        builder.structure = structure
        builder.parameters = orm.Dict(
            {
                'temperatures': [temperature],
                'min_atoms': args.min_atoms,
                'nvt_time': args.nvt_time,
                'nve_time': args.nve_time,
            }
        )
        builder.metadata.options.environment_variables = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
        builder.metadata.label = f'stability_check_{temperature:g}K'
        jobs.append(submit(builder))
    print(f'{model.__class__.__name__}<{model.pk}>: ' + ', '.join(f'{job.label}<{job.pk}>' for job in jobs), flush=True)
    while not all(job.is_terminated for job in jobs):
        time.sleep(15)
    passed = True
    for job in jobs:
        if 'results' not in job.outputs:
            print(f'{job.label}: {job.process_state.value} [{job.exit_status}] {job.exit_message or ""}')
            passed = False
            continue
        for run in job.outputs.results['runs']:
            checks = ', '.join(f'{name} {"ok" if ok else "FAILED"}' for name, ok in run['checks'].items())
            print(
                f'{run["temperature"]:g} K, {run["n_atoms"]} atoms, {run["simulated_ps"]:g} ps: closest pair '
                f'{run["min_distance"]:.2f} Å ({run["min_distance_ratio"]:.2f} x covalent), mean T '
                f'{run["temperature_mean"]:.0f} K, largest excursion {run["temperature_max_excursion"]:.0%}, NVE drift '
                f'{run["energy_drift"]:.3g} meV/atom/ps; {checks}'
            )
        passed = passed and job.outputs.results['passed']
    print(f'{"passed" if passed else "FAILED"} after {(time.time() - start) / 60:.1f} min')
    return 0 if passed else 1


if __name__ == '__main__':
    raise SystemExit(main())
