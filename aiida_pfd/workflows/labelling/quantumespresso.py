"""DFT labels from Quantum ESPRESSO's pw.x, through aiida-quantumespresso's ``PwBaseWorkChain``."""

from __future__ import annotations

from aiida import orm
from aiida.engine import ProcessBuilder
from aiida_quantumespresso.workflows.protocols.utils import recursive_merge
from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

from ...protocols import get_protocol


def get_pw_builder(
    code: orm.AbstractCode,
    structure: orm.StructureData,
    protocol: str | None = None,
    overrides: dict | None = None,
    **kwargs,
) -> ProcessBuilder:
    """Return a ``PwBaseWorkChain`` builder for an SCF calculation with forces and stress, using a PFD preset.

    :param protocol: preset of ``protocols/quantumespresso.yaml`` (``fast``, ``balanced``, ``stringent``).
    :param overrides: overrides in aiida-quantumespresso's format, applied on top of the preset's.
    :param kwargs: passed on to ``PwBaseWorkChain.get_builder_from_protocol`` (``electronic_type``, ``spin_type``...).
    """
    preset = get_protocol('quantumespresso', protocol)
    merged = recursive_merge(preset['overrides'], overrides or {})
    merged = recursive_merge(merged, {'pw': {'parameters': {'CONTROL': {'tprnfor': True, 'tstress': True}}}})
    return PwBaseWorkChain.get_builder_from_protocol(
        code, structure, protocol=preset['base_protocol'], overrides=merged, **kwargs
    )
