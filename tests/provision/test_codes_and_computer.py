"""The localhost computer and the four codes of ``aiida-pfd setup``."""

from __future__ import annotations

import sys

import pytest

from aiida_pfd.provision import Status
from aiida_pfd.provision.codes import CodeSpec, default_executables, default_specs, ensure_code
from aiida_pfd.provision.computer import ensure_localhost, load_existing


def test_localhost_runs_system_mpirun_on_all_cores(aiida_profile_clean, tmp_path):
    computer, outcome = ensure_localhost(tmp_path, mpiprocs=2)
    assert outcome.status is Status.CREATED
    assert computer.get_mpirun_command()[1:] == ['--allow-run-as-root', '-np', '{tot_num_mpiprocs}']
    assert computer.get_default_mpiprocs_per_machine() == 2
    assert computer.is_user_configured(computer.backend.default_user)
    assert ensure_localhost(tmp_path)[1].status is Status.UNCHANGED


def test_existing_computer_must_exist(aiida_profile_clean):
    with pytest.raises(ValueError, match='verdi computer setup'):
        load_existing('cluster')


def test_code_is_created_once_and_never_silently_replaced(aiida_profile_clean, localhost):
    spec = CodeSpec(label='python', executable=sys.executable, description='test', with_mpi=False)
    code, outcome = ensure_code(spec, localhost)
    assert outcome.status is Status.CREATED
    assert code.full_label == 'python@localhost'
    assert code.with_mpi is False
    assert ensure_code(spec, localhost)[1].status is Status.UNCHANGED

    moved = CodeSpec(label='python', executable='/opt/other/python', description='test')
    code_again, outcome = ensure_code(moved, localhost)
    assert outcome.status is Status.WARNING
    assert code_again.pk == code.pk
    assert str(code_again.filepath_executable) == sys.executable


def test_missing_executables_are_reported_not_registered():
    specs = default_specs({'pw': None, 'dp': '/x/dp', 'lmp': '/x/lmp', 'python': sys.executable})
    assert specs[0] == 'pw'
    pw_free = {s.label: s for s in specs if isinstance(s, CodeSpec)}
    assert set(pw_free) == {'dp', 'lmp', 'python'}
    assert pw_free['lmp'].executable == '/x/lmp' and pw_free['lmp'].with_mpi is False


def test_default_executables_point_into_this_environment():
    executables = default_executables()
    assert executables['python'] == sys.executable
    assert executables['dp'] and executables['dp'].endswith('dp')
    assert executables['lmp'] and executables['lmp'].endswith('lmp')
