"""The summary of a PFD run (``PFDWorkChain``, with its distillation when there was one), as numbers and as tables."""

from __future__ import annotations

from aiida import orm
from tabulate import tabulate


def dft_calculations(node: orm.WorkflowNode) -> tuple[int, int]:
    """DFT calculations launched by ``node`` (its ``PwBaseWorkChain``s, or another adaptor's) and how many failed."""
    called = [child for child in node.called if child.process_label in ('PwBaseWorkChain', 'VaspWorkChain')]
    return len(called), sum(1 for child in called if not child.is_finished_ok)


def summarize(node: orm.WorkflowNode) -> dict:
    """The numbers of a PFD run: DFT calculations, iterations, test errors, speed-up, output model PKs."""
    outputs = node.outputs
    n_dft, n_failed = dft_calculations(node)
    history = outputs.history['iterations'] if 'history' in outputs else []
    summary = {
        'pk': node.pk,
        'exit_status': node.exit_status,
        'exit_message': node.exit_message,
        'dft_calculations': n_dft,
        'dft_failed': n_failed,
        'iterations': len(history),
        'history': history,
        'failures': outputs.history.get('failures', []) if 'history' in outputs else [],
        'training_frames': outputs.training_set.n_frames if 'training_set' in outputs else 0,
        'test_frames': outputs.test_set.n_frames if 'test_set' in outputs else 0,
        'dft_frames': outputs.dft_frames.base.attributes.get('role_counts', {}) if 'dft_frames' in outputs else {},
        'in_loop': _in_loop(history[-1]) if history and history[-1].get('force_rmse') is not None else None,
        'finetuned': _errors(outputs.metrics.get_dict()) if 'metrics' in outputs else None,
        'finetuned_model': outputs.model.pk if 'model' in outputs else None,
    }
    if 'foundation_metrics' in outputs:
        foundation = outputs.foundation_metrics.get_dict()
        summary['zero_shot'] = _errors(foundation['zero_shot'])
        summary['aligned_zero_shot'] = _errors(foundation['aligned']) if 'aligned' in foundation else None
    distill = outputs['distill'] if 'distill' in outputs else {}
    if 'metrics' in distill:
        metrics = distill['metrics'].get_dict()
        summary['distilled'] = _errors(metrics['student_vs_dft']) if 'student_vs_dft' in metrics else None
        summary['distilled_vs_teacher'] = _errors(metrics['student_vs_teacher'])
        if 'speed' in metrics:
            speed = metrics['speed']
            summary['speedup'] = dict(zip(speed['n_atoms'], speed['speedup']['student']))
            if 'student_uncompressed' in speed['speedup']:
                summary['speedup_uncompressed'] = dict(zip(speed['n_atoms'], speed['speedup']['student_uncompressed']))
            summary['ms_per_atom_step'] = {
                name: dict(zip(speed['n_atoms'], values['ms_per_atom_step']))
                for name, values in speed['models'].items()
            }
    if 'stability' in distill:
        summary['stability'] = distill['stability'].get_dict()
    if 'rounds' in distill:
        summary['rounds'] = distill['rounds']['rounds']
    if 'model' in distill:
        summary['distilled_model'] = distill['model'].pk
        summary['distillation_frames'] = distill['training_set'].n_frames + distill['test_set'].n_frames
    return summary


def _in_loop(entry: dict) -> dict:
    """The last iteration's errors, on the fresh frames convergence was judged on."""
    return {
        'force_rmse': entry['force_rmse'],
        'energy_rmse_meV': entry['energy_rmse_per_atom'] * 1000,
        'n_frames': entry.get('frames_judged'),
    }


def _errors(metrics: dict) -> dict:
    return {
        'force_rmse': metrics['force_rmse'],
        'energy_rmse_meV': metrics['energy_rmse_per_atom'] * 1000,
        'n_frames': metrics['n_frames'],
    }


def summary_tables(summary: dict, wall_time: float | None = None) -> str:
    """The summary as text: the iterations, then one table of the run's figures."""
    lines = []
    if summary['history']:
        rows = [
            [
                entry['iteration'],
                entry.get('dft_labelled', '-'),
                entry.get('dft_failed', '-'),
                entry.get('frames_held_out', '-'),
                entry.get('frames_added', '-'),
                entry.get('frames_judged', '-'),
                _number(entry.get('force_rmse'), '.4f'),
                _number(_meV(entry.get('energy_rmse_per_atom')), '.2f'),
                entry.get('decision', ''),
            ]
            for entry in summary['history']
        ]
        headers = [
            'iteration',
            'DFT',
            'failed',
            'held out',
            'added',
            'judged',
            'force RMSE (eV/Å)',
            'energy RMSE (meV/atom)',
            'decision',
        ]
        lines += [
            'Fine-tuning iterations (errors of the model that explored, on the fresh frames not held out; "judged"):'
        ]
        lines += [tabulate(rows, headers=headers), '']

    if summary.get('failures'):
        rows = [
            [entry['iteration'], entry['step'], entry['process'], entry['exit_status'], entry['action']]
            for entry in summary['failures']
        ]
        lines += ['Failed jobs (`history.failures` has their messages):']
        lines += [tabulate(rows, headers=['iteration', 'step', 'job', 'exit', 'what followed']), '']

    rows = [
        ['PFDWorkChain', f'<{summary["pk"]}> exit {summary["exit_status"]} {summary["exit_message"] or ""}'.strip()],
        ['DFT calculations', f'{summary["dft_calculations"]} ({summary["dft_failed"]} failed)'],
        ['iterations', summary['iterations']],
        ['DFT frames trained on / held out (test set)', f'{summary["training_frames"]} / {summary["test_frames"]}'],
    ]
    if summary.get('dft_frames'):
        counts = ', '.join(f'{role.replace("_", " ")} {count}' for role, count in summary['dft_frames'].items())
        rows.append(['DFT frames by role', counts])
    if summary.get('in_loop'):
        errors = summary['in_loop']
        rows.append(
            [
                f'in-loop: last iteration, {errors["n_frames"]} fresh frames',
                f'{errors["force_rmse"]:.4f} eV/Å, {errors["energy_rmse_meV"]:.2f} meV/atom',
            ]
        )
    test = f'on the {summary["test_frames"]} held-out DFT frames'
    models = (
        ('zero_shot', 'foundation zero-shot'),
        ('aligned_zero_shot', 'foundation, energy zero aligned'),
        ('finetuned', 'fine-tuned model'),
        ('distilled', 'distilled model'),
    )
    for key, name in models:
        if summary.get(key):
            errors = summary[key]
            figures = f'{errors["force_rmse"]:.4f} eV/Å, {errors["energy_rmse_meV"]:.2f} meV/atom'
            rows.append([f'{name} {test}', figures])
    if summary.get('distilled_vs_teacher'):
        errors = summary['distilled_vs_teacher']
        rows.append(
            [
                f'distilled vs teacher ({errors["n_frames"]} held-out frames of {summary["distillation_frames"]})',
                f'{errors["force_rmse"]:.4f} eV/Å, {errors["energy_rmse_meV"]:.2f} meV/atom',
            ]
        )
    for atoms, ratio in summary.get('speedup', {}).items():
        times = summary['ms_per_atom_step']
        detail = ', '.join(f'{name} {_number(values.get(atoms), ".4f")}' for name, values in sorted(times.items()))
        uncompressed = summary.get('speedup_uncompressed', {})
        before = f'; uncompressed {_number(uncompressed.get(atoms), ".1f")}x' if uncompressed else ''
        rows.append(
            [f'speed-up per atom-step, {atoms} atoms', f'{_number(ratio, ".1f")}x{before} (ms/atom-step: {detail})']
        )
    if summary.get('rounds'):
        steps = '; '.join(
            f'round {entry["round"]}: {_number(entry.get("force_rmse"), ".4f")} eV/Å on {entry["training_frames"]} '
            f'frames' + (f', +{entry["added"]}' if entry.get('added') else f' ({entry.get("stopped", "")})')
            for entry in summary['rounds']
        )
        rows.append(['distillation rounds (student vs held-out teacher frames)', steps])
    for run in summary.get('stability', {}).get('runs', []):
        verdict = 'passed' if run['passed'] else f'FAILED: {run["message"]}'
        rows.append(
            [
                f'distilled model in MD, {run["temperature"]:g} K, {run["n_atoms"]} atoms, {run["simulated_ps"]:g} ps',
                f'{verdict} (closest pair {run["min_distance"]:.2f} Å, temperature within '
                f'{_number(run["temperature_max_excursion"], ".0%")}, NVE drift {_number(run["energy_drift"], ".3f")} '
                'meV/atom/ps)',
            ]
        )
    if wall_time is not None:
        rows.append(['wall time', f'{wall_time / 60:.1f} min'])
    if summary.get('finetuned_model'):
        rows.append(['fine-tuned model', f'ModelData<{summary["finetuned_model"]}>'])
    if summary.get('distilled_model'):
        rows.append(['distilled model', f'ModelData<{summary["distilled_model"]}>'])
    lines += [tabulate(rows, tablefmt='simple_outline')]
    return '\n'.join(lines)


def print_summary(node: orm.WorkflowNode, wall_time: float | None = None, echo=print) -> dict:
    """Print the tables of :func:`summary_tables` for ``node``; return the summary."""
    summary = summarize(node)
    echo('')
    echo(summary_tables(summary, wall_time))
    return summary


def _meV(value):
    return None if value is None else value * 1000


def _number(value, spec: str) -> str:
    return '-' if value is None else format(value, spec)


def validation_text(table: dict) -> str:
    """A ``pfd.validate`` table as text: errors per reference category and model, then the properties beside DFT."""
    lines = []
    categories = table.get('categories', {})
    if categories:
        models = list(categories)
        names = list(next(iter(categories.values())))
        rows = [
            [name, categories[models[0]][name]['n_frames']]
            + [_category_cell(categories[model][name]) for model in models]
            for name in names
        ]
        lines += ['Errors on the independent DFT frames, per category (force RMSE eV/Å / energy RMSE meV/atom):']
        lines += [tabulate(rows, headers=['category', 'frames', *models]), '']
    properties = table.get('properties', {})
    if properties:
        models = list(next(iter(properties.values()))['models'])
        rows = []
        for name, row in properties.items():
            cells = [f'{name} ({row["unit"]})', _value(row.get('dft'))]
            for model in models:
                error = row['relative_error'].get(model)
                cells.append(_value(row['models'].get(model)) + ('' if error is None else f' ({error:.1%})'))
            cells.append(_number(row.get('student_vs_teacher'), '.1%'))
            rows.append(cells)
        lines += ['Properties (relative error against DFT in brackets; the student against the teacher last):']
        lines += [tabulate(rows, headers=['property', 'DFT', *models, 'student vs teacher'])]
    for flag in table.get('flags', []):
        lines.append(f'FLAG: {flag}')
    return '\n'.join(lines)


def _category_cell(errors: dict) -> str:
    return f'{errors["force_rmse"]:.3f} / {errors["energy_rmse_per_atom"] * 1000:.1f}'


def _value(value) -> str:
    if value is None:
        return '-'
    if isinstance(value, list):
        return ' '.join(f'{v:.2f}' for v in sorted(value)[-3:])
    return f'{value:.4g}'
