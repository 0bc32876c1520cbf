"""Protocol presets (YAML) shipped with aiida-pfd."""

from __future__ import annotations

import copy
import pathlib

import yaml

PROTOCOL_DIR = pathlib.Path(__file__).parent


def load_protocols(name: str) -> dict:
    """Return the parsed ``<name>.yaml`` protocol file."""
    with (PROTOCOL_DIR / f'{name}.yaml').open() as handle:
        return yaml.safe_load(handle)


def get_protocol(name: str, protocol: str | None = None) -> dict:
    """Return a copy of preset ``protocol`` (default: the file's ``default_protocol``) of protocol file ``name``."""
    protocols = load_protocols(name)
    protocol = protocol or protocols['default_protocol']
    if protocol not in protocols['protocols']:
        choices = ', '.join(protocols['protocols'])
        raise ValueError(f'unknown protocol `{protocol}` for {name}: choose one of {choices}.')
    return copy.deepcopy(protocols['protocols'][protocol])
