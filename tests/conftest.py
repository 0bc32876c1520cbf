"""Shared fixtures: a temporary AiiDA profile (aiida's own pytest fixtures) with PFD's computer, codes and pseudos."""

from __future__ import annotations

import pathlib
import shutil

import pytest

pytest_plugins = ['aiida.tools.pytest_fixtures']

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / 'shared'


def pytest_collection_modifyitems(config, items):
    """Skip tests that need pw.x when it is not installed, with the reason."""
    if shutil.which('pw.x'):
        return
    skip = pytest.mark.skip(reason='pw.x is not installed (apt-get install quantum-espresso)')
    for item in items:
        if 'needs_pw' in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def localhost(tmp_path_factory):
    """The ``localhost`` computer as ``aiida-pfd setup`` creates it."""
    from aiida_pfd.provision.computer import ensure_localhost

    computer, _ = ensure_localhost(tmp_path_factory.getbasetemp() / 'scratch')
    return computer


@pytest.fixture
def pw_code(localhost):
    """The ``pw@localhost`` code as ``aiida-pfd setup`` registers it."""
    from aiida_pfd.provision.codes import CodeSpec, default_executables, default_specs, ensure_code

    spec = next(s for s in default_specs(default_executables()) if isinstance(s, CodeSpec) and s.label == 'pw')
    return ensure_code(spec, localhost)[0]


@pytest.fixture
def pseudo_family():
    """The ``PFD/Debian/PBE`` family built from Debian's UPF files."""
    from aiida_pfd.provision.pseudos import DEBIAN_PSEUDO_DIR, ensure_family

    if not DEBIAN_PSEUDO_DIR.is_dir():
        pytest.skip(f'{DEBIAN_PSEUDO_DIR} is absent (apt-get install quantum-espresso)')
    return ensure_family()[0]
