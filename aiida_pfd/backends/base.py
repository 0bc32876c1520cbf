"""The interface every model backend implements."""

from __future__ import annotations

import abc
import dataclasses
import pathlib
import typing as t

if t.TYPE_CHECKING:
    from ase.calculators.calculator import Calculator


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    """What can be read from a model file without running it."""

    kind: str  # 'checkpoint' (can be trained further) or 'frozen' (inference only)
    type_map: list[str]
    heads: list[str] = dataclasses.field(default_factory=list)
    extras: dict = dataclasses.field(default_factory=dict)


class Backend(abc.ABC):
    """One model family: how to read its files and how to evaluate it through ASE."""

    name: str
    #: File suffixes of the family's model files, by kind.
    suffixes: t.ClassVar[dict[str, str]] = {}

    @abc.abstractmethod
    def read_metadata(self, path: pathlib.Path) -> ModelMetadata:
        """Return the metadata of model file ``path``; raise ``ValueError`` if it is not a model of this family."""

    @abc.abstractmethod
    def calculator(self, path: pathlib.Path, head: str | None = None, device: str | None = None) -> Calculator:
        """Return an ASE calculator for model file ``path`` (multi-task branch ``head``) on ``device``."""
