"""``aiida-pfd setup`` end to end, in a throw-away AiiDA configuration directory (``AIIDA_PATH``)."""

from __future__ import annotations

import json
import os
import pathlib
import pty
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


def run_in_terminal(command: str, *args: str, env: dict, typed: str) -> subprocess.CompletedProcess:
    """Run with a terminal as standard input, on which ``typed`` is typed; standard output and error are captured."""
    primary, secondary = pty.openpty()
    try:
        with subprocess.Popen(
            [str(BIN / command), *args],
            env=env,
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            os.write(primary, typed.encode())
            stdout, stderr = process.communicate(timeout=600)
    finally:
        os.close(primary)
        os.close(secondary)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def profile_options(env: dict, profile: str = 'pfd') -> dict:
    """The options of ``profile`` in the configuration of ``env``."""
    config = json.loads((pathlib.Path(env['AIIDA_PATH']) / '.aiida' / 'config.json').read_text())
    return config['profiles'][profile].get('options', {})


@needs_qe
def test_setup_creates_everything_then_changes_nothing(aiida_path):
    first = run('aiida-pfd', 'setup', '--no-daemon', env=aiida_path)
    assert first.returncode == 0, first.stdout + first.stderr
    for label in ('pw@localhost', 'dp@localhost', 'lmp@localhost', 'python@localhost', 'PFD/Debian/PBE'):
        assert label in first.stdout
    assert first.stdout.count(' created ') == 7  # profile, computer, four codes, family
    assert 'Turn on caching' not in first.stdout  # no terminal: no question, the setting is left off ...
    assert 'aiida-pfd setup --caching' in first.stdout  # ... and one line says how to turn it on

    second = run('aiida-pfd', 'setup', '--no-daemon', env=aiida_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert ' created ' not in second.stdout
    assert 'Nothing changed' in second.stdout
    assert 'caching.enabled_for' not in profile_options(aiida_path)

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


@needs_qe
def test_setup_asks_for_caching_in_a_terminal_then_changes_nothing(aiida_path):
    first = run_in_terminal('aiida-pfd', 'setup', '--no-daemon', env=aiida_path, typed='y\n')
    assert first.returncode == 0, first.stdout + first.stderr
    assert 'Turn on caching' in first.stdout
    assert 'aiida.calculations:pfd.*' in first.stdout
    assert profile_options(aiida_path)['caching.enabled_for'] == [
        'aiida.calculations:pfd.*',
        'aiida.calculations:quantumespresso.pw',
    ]

    second = run('aiida-pfd', 'setup', '--no-daemon', '--caching', env=aiida_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert ' created ' not in second.stdout
    assert 'Nothing changed' in second.stdout

    third = run_in_terminal('aiida-pfd', 'setup', '--no-daemon', '--no-caching', env=aiida_path, typed='y\n')
    assert third.returncode == 0, third.stdout + third.stderr
    assert 'Turn on caching' not in third.stdout  # the flag answers
    assert 'turned off' in third.stdout
    assert profile_options(aiida_path)['caching.enabled_for'] == []
