"""``pfd.model``: a model file of one backend, with the metadata a user queries (backend, kind, type map, heads)."""

from __future__ import annotations

import hashlib
import pathlib
import tempfile
import typing as t

from aiida import orm

from ..backends import available_backends, get_backend


def sha256_of(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


class ModelData(orm.SinglefileData):
    """A model file. Attributes: ``backend``, ``kind`` (checkpoint/frozen), ``type_map``, ``heads``, ``sha256``.

    ``ModelData(path, model_backend='deepmd')`` reads the file with that backend and rejects, with ``ValueError``, a
    file that is not one of its models. (The keyword is not ``backend``: that is AiiDA's storage backend.) Nothing
    here needs a GPU.
    """

    def __init__(self, file: str | pathlib.Path | t.BinaryIO | None = None, model_backend: str = 'deepmd', **kwargs):
        filename = kwargs.pop('filename', None)
        if file is None:
            super().__init__(file, filename=filename, **kwargs)
            return
        if isinstance(file, (str, pathlib.Path)):
            self._read(pathlib.Path(file).resolve(), model_backend, filename, **kwargs)
            return
        with tempfile.TemporaryDirectory() as directory:  # the backend reads a path; the node keeps its own copy
            path = pathlib.Path(directory) / (filename or 'model')
            path.write_bytes(file.read())
            self._read(path, model_backend, filename, **kwargs)

    def _read(self, path: pathlib.Path, model_backend: str, filename: str | None, **kwargs) -> None:
        backend = get_backend(model_backend)
        if not path.is_file():
            raise ValueError(f'`{path}` is not a file: give the path of a {backend.name} model file.')
        metadata = backend.read_metadata(path)
        super().__init__(path, filename=filename or path.name, **kwargs)
        self.base.attributes.set_many(
            {
                'backend': model_backend,
                'kind': metadata.kind,
                'type_map': metadata.type_map,
                'heads': metadata.heads,
                'sha256': sha256_of(path),
                **{key: value for key, value in metadata.extras.items() if value is not None},
            }
        )

    @classmethod
    def from_shipped(cls, name: str, **kwargs) -> ModelData:
        """A copy of a universal model shipped inside its Python package, e.g. ``sevennet-0`` (SevenNet-0, 11Jul2024),
        or fetched once into the model cache with ``aiida-pfd models fetch``, e.g. ``dpa4-neo`` (DPA-4).

        The node gets the attribute ``shipped_name``; a fetched model also ``origin`` (package, version, archive
        member, the checkpoint's own name, sha256). Unknown names raise ``ValueError`` listing the known ones
        (:func:`shipped_models`); a fetchable model that is not in the cache raises
        :class:`~aiida_pfd.model_cache.ModelNotFetchedError` naming the command to run.
        """
        from ..model_cache import FETCHABLE, cached_path

        known = shipped_models()
        if name not in known:
            raise ValueError(f'unknown shipped model `{name}`: choose one of {", ".join(sorted(known))}.')
        if name in FETCHABLE:
            spec = FETCHABLE[name]
            node = cls(cached_path(spec), model_backend=spec.backend, **kwargs)
            if node.sha256 != spec.sha256:
                raise ValueError(
                    f'the cached `{name}` has sha256 {node.sha256}, expected {spec.sha256}: run '
                    f'`aiida-pfd models fetch {name} --force`.'
                )
            node.base.attributes.set('origin', spec.origin())
        else:
            backend = get_backend(known[name])
            node = cls(backend.shipped_path(name), model_backend=backend.name, **kwargs)
        node.base.attributes.set('shipped_name', name)
        return node

    @property
    def model_backend(self) -> str:
        """The model family (attribute ``backend``): ``deepmd``, ``sevenn``..."""
        return self.base.attributes.get('backend')

    @property
    def kind(self) -> str:
        return self.base.attributes.get('kind')

    @property
    def type_map(self) -> list[str]:
        return self.base.attributes.get('type_map')

    @property
    def heads(self) -> list[str]:
        return self.base.attributes.get('heads')

    @property
    def sha256(self) -> str:
        return self.base.attributes.get('sha256')

    def missing_elements(self, elements: t.Iterable[str]) -> list[str]:
        """The ``elements`` this model's type map does not cover."""
        return [element for element in elements if element not in self.type_map]

    def get_calculator(self, head: str | None = None, device: str | None = None):
        """ASE calculator of this model, from a local copy of the file (kept for the calculator's lifetime)."""
        directory = tempfile.mkdtemp(prefix='pfd-model-')
        path = pathlib.Path(directory) / self.filename
        self.base.repository.copy_tree(directory)
        return get_backend(self.model_backend).calculator(path, head=head, device=device)


def shipped_models() -> dict[str, str]:
    """Names of the models shipped inside installed packages or fetchable into the model cache, with their backend:
    ``{'sevennet-0': 'sevenn', 'dpa4-neo': 'deepmd'}``."""
    from ..model_cache import FETCHABLE

    shipped = {
        name: backend for backend in available_backends() for name in getattr(get_backend(backend), 'shipped', {})
    }
    return {**shipped, **{name: spec.backend for name, spec in FETCHABLE.items()}}
