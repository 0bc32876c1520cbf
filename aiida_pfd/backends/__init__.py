"""Model families. Each backend module alone knows its family's files, commands and ASE calculator.

``get_backend(name)`` returns the backend object; everything outside ``backends/`` goes through it.
"""

from __future__ import annotations

from .base import Backend, ModelMetadata

_BACKENDS = {
    'deepmd': 'aiida_pfd.backends.deepmd:DeepmdBackend',
    'sevenn': 'aiida_pfd.backends.sevenn:SevennBackend',
}


def available_backends() -> tuple[str, ...]:
    return tuple(_BACKENDS)


def get_backend(name: str) -> Backend:
    """Return the backend called ``name`` (``deepmd``, ...)."""
    import importlib

    try:
        module_name, class_name = _BACKENDS[name].split(':')
    except KeyError:
        raise ValueError(f'unknown model backend `{name}`: choose one of {", ".join(_BACKENDS)}.') from None
    return getattr(importlib.import_module(module_name), class_name)()


__all__ = ('Backend', 'ModelMetadata', 'available_backends', 'get_backend')
