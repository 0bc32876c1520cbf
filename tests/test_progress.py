"""Following a process from the terminal."""

from __future__ import annotations

from aiida import orm
from aiida.engine import workfunction

from aiida_pfd.progress import follow


@workfunction
def reporting(value: orm.Int):
    """A process that reports one line."""
    return value


def test_follow_prints_state_and_reports(aiida_profile_clean):
    _, node = reporting.run_get_node(orm.Int(3))
    node.logger.report('iteration 1: converged')
    lines = []
    assert follow(node, poll=0, echo=lines.append) is node
    assert lines[0].endswith(f'reporting<{node.pk}> finished')
    assert any(line.endswith('iteration 1: converged') for line in lines)


@workfunction
def parent(value: orm.Int):
    """A process that calls ``reporting``."""
    return reporting(value)


def test_follow_prints_reports_of_named_children(aiida_profile_clean):
    _, node = parent.run_get_node(orm.Int(2))
    child = node.called[0]
    child.logger.report('distilling')
    lines = []
    follow(node, poll=0, echo=lines.append)
    assert not any(line.endswith('distilling') for line in lines)
    lines = []
    follow(node, poll=0, echo=lines.append, children=('reporting',))
    assert any(line.endswith('distilling') for line in lines)


def test_running_jobs_counts_unfinished_calcjobs(aiida_profile_clean, localhost):
    from aiida.common.links import LinkType

    from aiida_pfd.progress import running_jobs

    workflow = orm.WorkflowNode(process_type='aiida.workflows:pfd.pfd').store()
    for state in ('waiting', 'finished', 'running'):
        job = orm.CalcJobNode(computer=localhost, process_type='aiida.calculations:pfd.evaluate')
        job.set_process_state(state)
        job.set_process_label('EvaluateCalculation')
        job.base.links.add_incoming(workflow, link_type=LinkType.CALL_CALC, link_label='evaluate')
        job.store()
    assert running_jobs(workflow) == {'EvaluateCalculation': 2}
