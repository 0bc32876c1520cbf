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
