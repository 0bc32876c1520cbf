"""Follow a submitted process from a terminal: its report lines as they appear, until it terminates."""

from __future__ import annotations

import collections
import time

from aiida import orm


def running_jobs(node: orm.ProcessNode) -> dict[str, int]:
    """``{process label: count}`` of the calculation jobs below ``node`` that have not terminated."""
    labels = (
        each.process_label
        for each in node.called_descendants
        if isinstance(each, orm.CalcJobNode) and not each.is_terminated
    )
    return dict(sorted(collections.Counter(labels).items()))


def follow(
    node: orm.ProcessNode,
    poll: float = 5.0,
    echo=print,
    children: tuple[str, ...] = (),
    heartbeat: float | None = None,
) -> orm.ProcessNode:
    """Print the reports of ``node`` (and its state changes) until it terminates; return the node.

    :param children: process labels (e.g. ``('DistillWorkChain',)``) of descendants whose reports are printed too.
    :param heartbeat: after this many seconds without a new line, print which jobs are running and the time elapsed.
    """
    seen: set[int] = set()
    last_state = None
    start = last_line = time.monotonic()
    while True:
        state = node.process_state.value if node.process_state else 'created'
        if state != last_state:
            echo(f'{time.strftime("%H:%M:%S")} {node.process_label}<{node.pk}> {state}')
            last_state = state
            last_line = time.monotonic()
        for log in sorted(_logs(node, children), key=lambda log: log.time):
            if log.pk not in seen:
                seen.add(log.pk)
                echo(f'{log.time.astimezone().strftime("%H:%M:%S")} {log.message}')
                last_line = time.monotonic()
        if node.is_terminated:
            return node
        if heartbeat is not None and time.monotonic() - last_line >= heartbeat:
            jobs = ', '.join(f'{count} {label}' for label, count in running_jobs(node).items()) or 'none'
            elapsed = (time.monotonic() - start) / 60
            echo(f'{time.strftime("%H:%M:%S")} ... {elapsed:.0f} min elapsed; jobs running or queued: {jobs}')
            last_line = time.monotonic()
        time.sleep(poll)


def _logs(node: orm.ProcessNode, children: tuple[str, ...]) -> list:
    nodes = [node]
    if children:
        nodes.extend(each for each in node.called_descendants if each.process_label in children)
    return [log for each in nodes for log in orm.Log.collection.get_logs_for(each)]
