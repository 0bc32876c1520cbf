"""Start the profile's daemon so that submitted workflows run in the background."""

from __future__ import annotations

import pathlib
import sys

from aiida.manage.configuration import Profile

from .outcome import Outcome, Status


def _use_verdi_beside_python() -> None:
    """Let the daemon client find the ``verdi`` installed beside this Python when the virtualenv is not activated.

    The client looks ``verdi`` up on ``PATH`` once, at import; an unactivated virtualenv's ``bin`` is not on it.
    """
    from aiida.engine.daemon import client

    verdi = pathlib.Path(sys.executable).parent / 'verdi'
    if client.VERDI_BIN is None and verdi.exists():
        client.VERDI_BIN = str(verdi)


def ensure_daemon(profile: Profile, workers: int = 1) -> Outcome:
    """Start the daemon of ``profile`` unless it runs already."""
    from aiida.common.exceptions import ConfigurationError
    from aiida.engine.daemon.client import DaemonException, get_daemon_client

    if profile.process_control_backend is None:
        return Outcome('daemon', profile.name, Status.SKIPPED, 'the profile has no broker; use `run()` instead')
    _use_verdi_beside_python()
    client = get_daemon_client(profile.name)
    if client.is_daemon_running:
        return Outcome('daemon', profile.name, Status.UNCHANGED, 'running')
    try:
        client.start_daemon(number_workers=workers)
    except (DaemonException, ConfigurationError) as exception:
        return Outcome('daemon', profile.name, Status.WARNING, f'failed to start: {exception}')
    return Outcome('daemon', profile.name, Status.STARTED, f'{workers} worker(s)')
