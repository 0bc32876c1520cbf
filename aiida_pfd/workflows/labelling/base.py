"""The interface between the PFD loop and a DFT code: how to label one structure, and how to read the label.

An adaptor exposes its workflow's inputs in its own namespace of the calling workchain, builds the inputs of one
labelling run from them and a structure, and turns a finished run into a one-frame labelled dataset through a
calcfunction, so that each DFT frame links back to the calculation that produced it.
"""

from __future__ import annotations

import abc
import typing as t

from aiida import orm

if t.TYPE_CHECKING:
    from aiida.engine import ProcessSpec, WorkChain

    from ...data import LabeledDataset


class LabellingAdaptor(abc.ABC):
    """One DFT code behind the PFD loop."""

    #: Namespace of the calling workchain that holds this adaptor's inputs (e.g. ``dft``).
    namespace: t.ClassVar[str]
    #: The workflow that labels one structure.
    process_class: t.ClassVar[type[WorkChain]]

    @classmethod
    @abc.abstractmethod
    def expose(cls, spec: ProcessSpec) -> None:
        """Expose the labelling workflow's inputs (all but the structure) in :attr:`namespace`, as optional."""

    @classmethod
    @abc.abstractmethod
    def get_inputs(cls, caller: WorkChain, structure: orm.StructureData, label: str) -> dict:
        """Inputs of one labelling run of ``structure``, from the caller's exposed inputs."""

    @classmethod
    def check_structures(cls, inputs: dict, structures: dict) -> str | None:
        """A message naming what in the namespace ``inputs`` cannot label ``structures``, or None."""
        return None

    @classmethod
    @abc.abstractmethod
    def to_dataset(cls, node: orm.ProcessNode) -> LabeledDataset:
        """The one-frame labelled dataset of a finished run (made by a calcfunction, so provenance keeps the link)."""
