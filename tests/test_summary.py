"""The summary of a PFD run: figures from a workflow node's outputs, the tables, and ``aiida-pfd summary``."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.common.links import LinkType
from click.testing import CliRunner

from aiida_pfd.cli.cmd_summary import cmd_summary
from aiida_pfd.data import LabeledDataset
from aiida_pfd.summary import summarize, summary_tables


def metrics(force, energy, n_frames):
    return orm.Dict({'force_rmse': force, 'energy_rmse_per_atom': energy, 'n_frames': n_frames}).store()


@pytest.fixture
def pfd_node(aiida_profile_clean, emt_dataset):
    """A finished PFDWorkChain node with the outputs of a P→F→D run (two DFT calculations, one failed)."""
    node = orm.WorkflowNode(process_type='aiida.workflows:pfd.pfd')
    node.set_process_label('PFDWorkChain')
    node.set_process_state('finished')
    node.set_exit_status(0)
    node.store()
    for index, status in enumerate((0, 300)):
        dft = orm.WorkflowNode(process_type='aiida.workflows:quantumespresso.pw.base')
        dft.set_process_label('PwBaseWorkChain')
        dft.set_process_state('finished')
        dft.set_exit_status(status)
        dft.base.links.add_incoming(node, link_type=LinkType.CALL_WORK, link_label=f'dft_{index}')
        dft.store()
    history = {
        'iterations': [
            {
                'iteration': 1,
                'dft_labelled': 2,
                'dft_failed': 1,
                'frames_added': 0,
                'frames_held_out': 1,
                'frames_judged': 1,
                'force_rmse': 0.05,
                'energy_rmse_per_atom': 0.002,
                'decision': 'converged',
            }
        ],
        'failures': [
            {
                'iteration': 1,
                'step': 'dft',
                'process': 'PwBaseWorkChain<7>',
                'exit_status': 300,
                'message': 'The calculation failed with an unrecoverable error.',
                'action': 'frame skipped',
            }
        ],
    }
    distill_metrics = {
        'student_vs_dft': {'force_rmse': 0.07, 'energy_rmse_per_atom': 0.0025, 'n_frames': 8},
        'student_vs_teacher': {'force_rmse': 0.03, 'energy_rmse_per_atom': 0.001, 'n_frames': 2},
        'speed': {
            'n_atoms': [64, 512],
            'speedup': {'student': [20.0, 45.5], 'student_uncompressed': [8.0, 9.1], 'teacher': [1.0, 1.0]},
            'models': {
                'student': {'ms_per_atom_step': [0.1, 0.05]},
                'student_uncompressed': {'ms_per_atom_step': [0.25, 0.25]},
                'teacher': {'ms_per_atom_step': [2.0, 2.275]},
            },
        },
    }
    ledger = LabeledDataset.from_ase(emt_dataset.to_ase()[:2], type_map=emt_dataset.type_map)
    ledger.base.attributes.set('role_counts', {'initial': 1, 'held_out': 1})
    foundation = {
        'zero_shot': {'force_rmse': 0.2, 'energy_rmse_per_atom': 5.0, 'n_frames': 8},
        'aligned': {'force_rmse': 0.2, 'energy_rmse_per_atom': 0.004, 'n_frames': 8},
    }
    outputs = {
        'history': orm.Dict(history).store(),
        'dft_frames': ledger.store(),
        'foundation_metrics': orm.Dict(foundation).store(),
        'metrics': metrics(0.045, 0.0021, 8),
        'training_set': emt_dataset,
        'test_set': emt_dataset,
        'model': orm.Data().store(),
        'distill__metrics': orm.Dict(distill_metrics).store(),
        'distill__model': orm.Data().store(),
        'distill__training_set': emt_dataset,
        'distill__test_set': emt_dataset,
    }
    for label, output in outputs.items():
        output.base.links.add_incoming(node, link_type=LinkType.RETURN, link_label=label)
    node.seal()
    return node


def test_summary_reads_the_outputs(pfd_node):
    summary = summarize(pfd_node)
    assert summary['dft_calculations'] == 2 and summary['dft_failed'] == 1
    assert summary['iterations'] == 1 and summary['test_frames'] == 8
    assert summary['finetuned'] == {'force_rmse': 0.045, 'energy_rmse_meV': pytest.approx(2.1), 'n_frames': 8}
    assert summary['distilled']['force_rmse'] == 0.07
    assert summary['speedup'] == {64: 20.0, 512: 45.5}
    assert summary['speedup_uncompressed'] == {64: 8.0, 512: 9.1}
    assert summary['distillation_frames'] == 16

    assert summary['zero_shot']['force_rmse'] == 0.2 and summary['aligned_zero_shot']['energy_rmse_meV'] == 4.0
    assert summary['in_loop'] == {'force_rmse': 0.05, 'energy_rmse_meV': 2.0, 'n_frames': 1}
    assert summary['dft_frames'] == {'initial': 1, 'held_out': 1}

    text = summary_tables(summary, wall_time=600)
    assert 'fine-tuned model on the 8 held-out DFT frames' in text and '0.0450 eV/Å, 2.10 meV/atom' in text
    assert 'foundation zero-shot on the 8 held-out DFT frames' in text and '0.2000 eV/Å, 5000.00 meV/atom' in text
    assert 'in-loop: last iteration, 1 fresh frames' in text and 'initial 1, held out 1' in text
    assert '0.0700 eV/Å' in text and '45.5x; uncompressed 9.1x' in text and '10.0 min' in text
    assert 'distilled model' in text and f'ModelData<{summary["distilled_model"]}>' in text
    assert summary['failures'][0]['action'] == 'frame skipped'
    assert 'Failed jobs' in text and 'PwBaseWorkChain<7>' in text and 'frame skipped' in text


def test_summary_command(pfd_node):
    result = CliRunner().invoke(cmd_summary, [str(pfd_node.pk)])
    assert result.exit_code == 0, result.output
    assert 'speed-up per atom-step, 512 atoms' in result.output

    other = orm.WorkflowNode(process_type='aiida.workflows:pfd.distill')
    other.set_process_label('DistillWorkChain')
    other.store()
    result = CliRunner().invoke(cmd_summary, [str(other.pk)])
    assert result.exit_code != 0 and 'is not a PFDWorkChain' in result.output


def test_validation_text_shows_categories_properties_and_flags():
    from aiida_pfd.summary import validation_text

    errors = {'n_frames': 4, 'force_rmse': 0.0512, 'energy_rmse_per_atom': 0.0021, 'max_force_error': 0.2}
    table = {
        'categories': {
            'fine_tuned': {'vacancy_15': errors},
            'distilled': {'vacancy_15': {**errors, 'force_rmse': 0.09}},
        },
        'properties': {
            'b0': {
                'unit': 'GPa',
                'models': {'fine_tuned': 88.0, 'distilled': 99.0},
                'dft': 89.0,
                'relative_error': {'fine_tuned': 1 / 89, 'distilled': 10 / 89},
                'student_vs_teacher': 0.125,
            }
        },
        'flags': ['b0: the student deviates 12.5% from the teacher (tolerance 10%)'],
    }
    text = validation_text(table)
    assert 'vacancy_15' in text and '0.051 / 2.1' in text and '0.090 / 2.1' in text
    assert 'b0 (GPa)' in text and '99 (11.2%)' in text and '12.5%' in text
    assert text.splitlines()[-1].startswith('FLAG: b0')
