"""Adaptors that turn structures into DFT labels (energy, forces, stress) with one DFT code each."""

from .base import LabellingAdaptor
from .quantumespresso import QuantumEspressoAdaptor

#: The DFT codes the PFD loop can label with, each in its own input namespace.
ADAPTORS: tuple[type[LabellingAdaptor], ...] = (QuantumEspressoAdaptor,)

__all__ = ('ADAPTORS', 'LabellingAdaptor', 'QuantumEspressoAdaptor')
