"""Follow a submitted process from a terminal: its report lines as they appear, until it terminates."""

from __future__ import annotations

import time

from aiida import orm


def follow(node: orm.ProcessNode, poll: float = 5.0, echo=print) -> orm.ProcessNode:
    """Print the reports of ``node`` (and its state changes) until it terminates; return the node."""
    seen: set[int] = set()
    last_state = None
    while True:
        state = node.process_state.value if node.process_state else 'created'
        if state != last_state:
            echo(f'{time.strftime("%H:%M:%S")} {node.process_label}<{node.pk}> {state}')
            last_state = state
        for log in sorted(orm.Log.collection.get_logs_for(node), key=lambda log: log.time):
            if log.pk not in seen:
                seen.add(log.pk)
                echo(f'{log.time.astimezone().strftime("%H:%M:%S")} {log.message}')
        if node.is_terminated:
            return node
        time.sleep(poll)
