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


@pytest.fixture
def dp_code(localhost):
    """The ``dp@localhost`` code as ``aiida-pfd setup`` registers it."""
    from aiida_pfd.provision.codes import CodeSpec, default_executables, default_specs, ensure_code

    spec = next(s for s in default_specs(default_executables()) if isinstance(s, CodeSpec) and s.label == 'dp')
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


@pytest.fixture(scope='session')
def multitask_checkpoint_file(tmp_path_factory):
    """A tiny multi-task DPA-3 checkpoint (branches EMT_Al, EMT_Cu; type map Al, Cu, Si) built offline."""
    from aiida_pfd.testing.foundation import build_tiny_multitask_checkpoint

    return build_tiny_multitask_checkpoint(tmp_path_factory.mktemp('foundation'))


@pytest.fixture
def multitask_checkpoint(multitask_checkpoint_file):
    """The tiny multi-task foundation as a stored ``pfd.model`` node."""
    from aiida_pfd.data import ModelData

    return ModelData(multitask_checkpoint_file).store()


@pytest.fixture
def parse_retrieved(localhost):
    """Run a PFD parser on a fake finished job whose ``retrieved`` folder is built from fixture files.

    ``parse_retrieved(entry_point, folder=None, files=None, inputs=None)`` creates a ``CalcJobNode`` of CalcJob
    ``entry_point`` (its option defaults set, ``inputs`` stored and linked: ``{link label: node}``, a nested input as
    ``structures__s0``), attaches a ``retrieved`` FolderData holding the tree ``folder`` plus ``files`` (``{relative
    path: source path or bytes}``), and returns ``(results, calcfunction_node)`` of ``Parser.parse_from_node``.
    """
    import pathlib

    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.plugins import CalculationFactory, ParserFactory

    def factory(entry_point, folder=None, files=None, inputs=None):
        process = CalculationFactory(entry_point)
        node = orm.CalcJobNode(computer=localhost, process_type=f'aiida.calculations:{entry_point}')
        for name, port in process.spec().inputs['metadata']['options'].items():
            if port.has_default() and name not in ('parser_name',):
                default = port.default() if callable(port.default) else port.default
                node.set_option(name, default)
        node.set_option('resources', {'num_machines': 1, 'num_mpiprocs_per_machine': 1})
        for label, value in (inputs or {}).items():
            value = value if value.is_stored else value.store()
            node.base.links.add_incoming(value, link_type=LinkType.INPUT_CALC, link_label=label)
        node.store()

        retrieved = orm.FolderData()
        if folder is not None:
            retrieved.base.repository.put_object_from_tree(str(folder))
        for target, source in (files or {}).items():
            content = source if isinstance(source, bytes) else pathlib.Path(source).read_bytes()
            retrieved.base.repository.put_object_from_bytes(content, target)
        retrieved.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label='retrieved')
        retrieved.store()
        return ParserFactory(entry_point).parse_from_node(node, store_provenance=False)

    return factory
