"""Create or reuse the computer that the PFD codes are installed on."""

from __future__ import annotations

import os
import pathlib
import shutil

from aiida import orm
from aiida.common import exceptions

from .outcome import Outcome, Status

LOCALHOST = 'localhost'


def default_mpirun() -> list[str]:
    """Return the MPI launcher for the system's pw.x.

    Debian's pw.x is built against Open MPI, so ``/usr/bin/mpirun`` is preferred over whatever ``mpirun`` comes first
    on ``PATH`` (a virtualenv may ship MPICH's, which starts independent serial copies of an Open MPI program).
    ``--allow-run-as-root`` lets it run in containers; it is harmless for other users.
    """
    mpirun = '/usr/bin/mpirun' if os.path.exists('/usr/bin/mpirun') else (shutil.which('mpirun') or 'mpirun')
    return [mpirun, '--allow-run-as-root', '-np', '{tot_num_mpiprocs}']


def ensure_localhost(
    workdir: pathlib.Path,
    *,
    label: str = LOCALHOST,
    mpiprocs: int | None = None,
    mpirun_command: list[str] | None = None,
) -> tuple[orm.Computer, Outcome]:
    """Return the local computer ``label``, creating and configuring it (core.local, core.direct) if it is missing."""
    try:
        computer = orm.load_computer(label)
    except exceptions.NotExistent:
        pass
    else:
        return computer, Outcome('computer', label, Status.UNCHANGED, _describe(computer))

    computer = orm.Computer(
        label=label,
        hostname='localhost',
        description='This machine, set up by `aiida-pfd setup`',
        transport_type='core.local',
        scheduler_type='core.direct',
        workdir=str(workdir),
    )
    computer.set_mpirun_command(mpirun_command or default_mpirun())
    computer.set_default_mpiprocs_per_machine(mpiprocs or os.cpu_count() or 1)
    computer.store()
    computer.configure(safe_interval=0)
    computer.set_minimum_job_poll_interval(1)
    return computer, Outcome('computer', label, Status.CREATED, _describe(computer))


def load_existing(label: str) -> tuple[orm.Computer, Outcome]:
    """Return a computer the user configured already (e.g. a Slurm cluster over SSH); it is never modified."""
    try:
        computer = orm.load_computer(label)
    except exceptions.NotExistent as exception:
        raise ValueError(
            f'computer `{label}` does not exist: set it up with `verdi computer setup` and `verdi computer configure` '
            'first, or leave out `--computer` to use this machine.'
        ) from exception
    if not computer.is_user_configured(orm.User.collection.get_default()):
        raise ValueError(f'computer `{label}` is not configured: run `verdi computer configure` for it first.')
    return computer, Outcome('computer', label, Status.UNCHANGED, _describe(computer))


def _describe(computer: orm.Computer) -> str:
    procs = computer.get_default_mpiprocs_per_machine()
    return f'{computer.transport_type}/{computer.scheduler_type}, {procs or "?"} MPI procs per machine'
