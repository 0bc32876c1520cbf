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


@pytest.fixture
def python_code(localhost):
    """The ``python@localhost`` code (this interpreter) as ``aiida-pfd setup`` registers it."""
    from aiida_pfd.provision.codes import CodeSpec, default_executables, default_specs, ensure_code

    spec = next(s for s in default_specs(default_executables()) if isinstance(s, CodeSpec) and s.label == 'python')
    return ensure_code(spec, localhost)[0]


@pytest.fixture(scope='session')
def tiny_model_files(tmp_path_factory):
    """A tiny se_e2_a DeePMD model (type map Cu, Si) trained 20 steps on EMT Cu: checkpoint and frozen files."""
    from aiida_pfd.testing.models import emt_frames, train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp('tiny-model'), emt_frames('Cu'), ['Cu', 'Si'])


@pytest.fixture
def tiny_model(tiny_model_files):
    """The tiny frozen model as a stored ``pfd.model`` node."""
    from aiida_pfd.data import ModelData

    return ModelData(tiny_model_files['frozen']).store()


@pytest.fixture
def tiny_checkpoint(tiny_model_files):
    """The tiny model's training checkpoint as a stored ``pfd.model`` node."""
    from aiida_pfd.data import ModelData

    return ModelData(tiny_model_files['checkpoint']).store()


@pytest.fixture
def emt_dataset():
    """Eight EMT-labelled rattled 4-atom Cu cells (energy, forces, virial), type map Cu, Si."""
    from aiida_pfd.data import LabeledDataset
    from aiida_pfd.testing.models import emt_frames

    return LabeledDataset.from_ase(emt_frames('Cu', n_frames=8, seed=3), type_map=['Cu', 'Si']).store()
