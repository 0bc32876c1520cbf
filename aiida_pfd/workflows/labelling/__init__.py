"""Adaptors that turn structures into DFT labels (energy, forces, stress) with one DFT code each."""

from .base import LabellingAdaptor
from .quantumespresso import QuantumEspressoAdaptor

#: The DFT codes the PFD loop can label with, each in its own input namespace.
ADAPTORS: tuple[type[LabellingAdaptor], ...] = (QuantumEspressoAdaptor,)


def get_adaptor(namespace: str) -> type[LabellingAdaptor]:
    """The adaptor whose inputs live in ``namespace``."""
    for adaptor in ADAPTORS:
        if adaptor.namespace == namespace:
            return adaptor
    raise ValueError(f'no DFT adaptor for namespace `{namespace}`; known: {[a.namespace for a in ADAPTORS]}.')


__all__ = ('ADAPTORS', 'LabellingAdaptor', 'QuantumEspressoAdaptor', 'get_adaptor')
