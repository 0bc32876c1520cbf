"""Register the executables PFD runs (pw.x, dp, LAMMPS and the Python interpreter) as AiiDA ``InstalledCode``s."""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import sys

from aiida import orm
from aiida.common import exceptions

from .outcome import Outcome, Status

#: Threads per MPI rank for pw.x; ranks already fill the cores.
SERIAL_THREADS = 'export OMP_NUM_THREADS=1'


@dataclasses.dataclass(frozen=True)
class CodeSpec:
    """What to register for one code."""

    label: str
    executable: str
    description: str
    default_calc_job_plugin: str | None = None
    with_mpi: bool | None = None
    prepend_text: str = ''


def _next_to_python(name: str) -> str | None:
    """Return the console script ``name`` installed beside this interpreter (the virtualenv's ``bin``), if any."""
    candidate = pathlib.Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else shutil.which(name)


def default_executables() -> dict[str, str | None]:
    """Return where each code lives on this machine, or ``None`` where it is not installed."""
    return {
        'pw': shutil.which('pw.x'),
        'dp': _next_to_python('dp'),
        'lmp': _next_to_python('lmp'),
        'python': sys.executable,
    }


def default_specs(executables: dict[str, str | None]) -> list[CodeSpec | str]:
    """Return a :class:`CodeSpec` for each code, or the code's label where its executable is unknown."""
    known = {
        'pw': dict(
            description='Quantum ESPRESSO pw.x',
            default_calc_job_plugin='quantumespresso.pw',
            with_mpi=True,
            prepend_text=SERIAL_THREADS,
        ),
        'dp': dict(description='DeePMD-kit command line (PyTorch backend)', with_mpi=False),
        'lmp': dict(description='LAMMPS with the DeePMD-kit pair style', with_mpi=False),
        'python': dict(description='Python interpreter with aiida-pfd, for the PFD scripts', with_mpi=False),
    }
    specs: list[CodeSpec | str] = []
    for label, settings in known.items():
        executable = executables.get(label)
        specs.append(CodeSpec(label=label, executable=executable, **settings) if executable else label)
    return specs


def ensure_code(spec: CodeSpec, computer: orm.Computer) -> tuple[orm.InstalledCode, Outcome]:
    """Return the code ``spec.label@computer``, creating it if it does not exist.

    An existing code is never modified (codes are immutable once used); if it points at another executable, the
    outcome is a warning that says how to replace it.
    """
    full_label = f'{spec.label}@{computer.label}'
    try:
        code = orm.load_code(full_label)
    except exceptions.NotExistent:
        pass
    else:
        existing = str(code.filepath_executable) if isinstance(code, orm.InstalledCode) else None
        if existing != spec.executable:
            return code, Outcome(
                'code',
                full_label,
                Status.WARNING,
                f'exists with executable {existing}, not {spec.executable}; kept as it is '
                f'(relabel it with `verdi code relabel` and re-run to register the new one)',
            )
        return code, Outcome('code', full_label, Status.UNCHANGED, spec.executable)

    code = orm.InstalledCode(
        label=spec.label,
        computer=computer,
        filepath_executable=spec.executable,
        description=spec.description,
        default_calc_job_plugin=spec.default_calc_job_plugin,
        prepend_text=spec.prepend_text,
    )
    if spec.with_mpi is not None:
        code.with_mpi = spec.with_mpi
    code.store()
    return code, Outcome('code', full_label, Status.CREATED, spec.executable)
