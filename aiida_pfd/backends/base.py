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

    #: Entry point of the CalcJob that fine-tunes this family's models, and the label of the code it runs
    #: (a key of the PFD workchains' ``codes`` namespace).
    train_process: t.ClassVar[str] = ''
    #: The restart work chain around :attr:`train_process` (a diverged loss is retried once at a lower rate).
    train_workchain: t.ClassVar[str] = ''
    train_code: t.ClassVar[str] = 'python'
    #: Where the training seed sits in the family's training settings, as (section, key).
    seed_key: t.ClassVar[tuple[str, str]] = ('training', 'seed')

    def with_seed(self, parameters: dict, seed: int) -> tuple[dict, int]:
        """``parameters`` with the training seed set to ``seed`` unless they set one; and the seed they train with."""
        section, key = self.seed_key
        parameters = {**parameters, section: dict(parameters.get(section, {}))}
        parameters[section].setdefault(key, int(seed))
        return parameters, parameters[section][key]

    #: Where the learning rate sits in the family's training settings (a path of keys), and its default there.
    learning_rate_keys: t.ClassVar[tuple[str, ...]] = ()
    default_learning_rate: t.ClassVar[float] = 0.0
    #: Further learning rates (paths of keys) that scale with it when set, e.g. DeePMD's final rate.
    scaled_with_learning_rate: t.ClassVar[tuple[tuple[str, ...], ...]] = ()

    def with_scaled_learning_rate(self, parameters: dict, factor: float) -> tuple[dict, float, float]:
        """``parameters`` with the learning rate times ``factor``; and the learning rate before and after."""
        import copy

        if not self.learning_rate_keys:
            raise NotImplementedError(f'the {self.name} backend has no learning rate to change.')
        parameters = copy.deepcopy(parameters)

        def section_of(keys):
            section = parameters
            for key in keys[:-1]:
                section = section.setdefault(key, {})
            return section

        section = section_of(self.learning_rate_keys)
        before = float(section.get(self.learning_rate_keys[-1], self.default_learning_rate))
        section[self.learning_rate_keys[-1]] = before * factor
        for keys in self.scaled_with_learning_rate:
            other = section_of(keys)
            if keys[-1] in other:
                other[keys[-1]] = float(other[keys[-1]]) * factor
        return parameters, before, before * factor

    def finetune_inputs(
        self,
        *,
        code,
        foundation,
        training_set,
        parameters: dict,
        model_branch: str | None = None,
        options: dict | None = None,
    ) -> dict:
        """Inputs of :attr:`train_process` that fine-tune ``foundation`` on ``training_set``.

        ``parameters`` are in the family's own training vocabulary; ``model_branch`` picks a branch of a multi-task
        foundation. The process must return ``model`` (for inference) and may return ``checkpoint`` (to go on from).
        """
        raise NotImplementedError(f'the {self.name} backend cannot fine-tune models.')

    #: Whether fine-tuning leaves the foundation's per-element energy zero where it is. DeePMD's ``--finetune`` refits
    #: the output bias to the training data itself; a family that does not must implement :meth:`shift_energy`, and
    #: the PFD workchain aligns the foundation to the first DFT frames before fine-tuning.
    needs_energy_alignment: t.ClassVar[bool] = False

    def shift_energy(self, path: pathlib.Path, offsets: dict[str, float], target: pathlib.Path) -> None:
        """Write to ``target`` the model ``path`` with ``offsets[element]`` (eV) added to each atom's energy."""
        raise NotImplementedError(f'the {self.name} backend cannot shift its energy zero.')

    def energy_shift_refusal(self, kind: str, heads: t.Sequence[str]) -> str | None:
        """Why :meth:`shift_energy` cannot take a model of ``kind`` with ``heads``; None if it can."""
        return f'the {self.name} backend cannot shift the energy zero of a model.'

    @abc.abstractmethod
    def calculator(self, path: pathlib.Path, head: str | None = None, device: str | None = None) -> Calculator:
        """Return an ASE calculator for model file ``path`` (multi-task branch ``head``) on ``device``."""
