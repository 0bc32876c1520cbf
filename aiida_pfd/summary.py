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
        'training_frames': outputs.training_set.n_frames if 'training_set' in outputs else 0,
        'test_frames': outputs.test_set.n_frames if 'test_set' in outputs else 0,
        'finetuned': _errors(outputs.metrics.get_dict()) if 'metrics' in outputs else None,
        'finetuned_model': outputs.model.pk if 'model' in outputs else None,
    }
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
    if 'model' in distill:
        summary['distilled_model'] = distill['model'].pk
        summary['distillation_frames'] = distill['training_set'].n_frames + distill['test_set'].n_frames
    return summary


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
                entry.get('frames_added', '-'),
                _number(entry.get('force_rmse'), '.4f'),
                _number(_meV(entry.get('energy_rmse_per_atom')), '.2f'),
                entry.get('decision', ''),
            ]
            for entry in summary['history']
        ]
        headers = ['iteration', 'DFT', 'failed', 'added', 'force RMSE (eV/Å)', 'energy RMSE (meV/atom)', 'decision']
        lines += ['Fine-tuning iterations (errors of the current model on the freshly labelled frames):']
        lines += [tabulate(rows, headers=headers), '']

    rows = [
        ['PFDWorkChain', f'<{summary["pk"]}> exit {summary["exit_status"]} {summary["exit_message"] or ""}'.strip()],
        ['DFT calculations', f'{summary["dft_calculations"]} ({summary["dft_failed"]} failed)'],
        ['iterations', summary['iterations']],
        ['DFT frames trained on / test set', f'{summary["training_frames"]} / {summary["test_frames"]}'],
    ]
    test = f'on the DFT test set ({summary["test_frames"]} frames)'
    for key, name in (('finetuned', 'fine-tuned model'), ('distilled', 'distilled model')):
        if summary.get(key):
            errors = summary[key]
            rows.append([f'{name} force RMSE {test}', f'{errors["force_rmse"]:.4f} eV/Å'])
            rows.append([f'{name} energy RMSE {test}', f'{errors["energy_rmse_meV"]:.2f} meV/atom'])
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
