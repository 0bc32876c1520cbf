"""``aiida-pfd setup`` end to end, in a throw-away AiiDA configuration directory (``AIIDA_PATH``)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

BIN = pathlib.Path(sys.executable).parent
needs_qe = pytest.mark.skipif(
    shutil.which('pw.x') is None or not pathlib.Path('/usr/share/espresso/pseudo').is_dir(),
    reason='Quantum ESPRESSO is not installed (apt-get install quantum-espresso)',
)


@pytest.fixture
def aiida_path(tmp_path):
    """Environment for a command that must see only a new, empty AiiDA configuration."""
    env = {key: value for key, value in os.environ.items() if not key.startswith('AIIDA_')}
    env['AIIDA_PATH'] = str(tmp_path)
    return env


def run(command: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / command), *args], env=env, capture_output=True, text=True, timeout=600)


@needs_qe
def test_setup_creates_everything_then_changes_nothing(aiida_path):
    first = run('aiida-pfd', 'setup', '--no-daemon', env=aiida_path)
    assert first.returncode == 0, first.stdout + first.stderr
    for label in ('pw@localhost', 'dp@localhost', 'lmp@localhost', 'python@localhost', 'PFD/Debian/PBE'):
        assert label in first.stdout
    assert first.stdout.count(' created ') == 7  # profile, computer, four codes, family

    second = run('aiida-pfd', 'setup', '--no-daemon', env=aiida_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert ' created ' not in second.stdout
    assert 'Nothing changed' in second.stdout

    codes = run('verdi', '-p', 'pfd', 'code', 'list', env=aiida_path)
    assert all(f'{label}@localhost' in codes.stdout for label in ('pw', 'dp', 'lmp', 'python')), codes.stdout
    families = run('aiida-pseudo', '-p', 'pfd', 'list', env=aiida_path)
    assert 'PFD/Debian/PBE' in families.stdout

    unknown = run('aiida-pfd', 'setup', '--no-daemon', '--computer', 'cluster', env=aiida_path)
    assert unknown.returncode != 0
    assert 'verdi computer setup' in unknown.stdout + unknown.stderr


@needs_qe
def test_setup_starts_the_zeromq_daemon_once(aiida_path):
    try:
        first = run('aiida-pfd', 'setup', '--profile-name', 'daemon-test', env=aiida_path)
        assert first.returncode == 0, first.stdout + first.stderr
        assert 'broker core.zeromq' in first.stdout
        assert 'started' in first.stdout

        second = run('aiida-pfd', 'setup', '--profile-name', 'daemon-test', env=aiida_path)
        assert second.returncode == 0, second.stdout + second.stderr
        assert 'Nothing changed' in second.stdout

        status = run('verdi', '-p', 'daemon-test', 'daemon', 'status', env=aiida_path)
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        run('verdi', '-p', 'daemon-test', 'daemon', 'stop', env=aiida_path)
