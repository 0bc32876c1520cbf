"""DeePMD-kit (PyTorch backend): checkpoints (``.pt``), frozen models (TorchScript ``.pth``; AOTInductor ``.pt2`` for
DPA-4), ``dp`` command lines."""

from __future__ import annotations

import pathlib
import typing as t

from .base import Backend, ModelMetadata

if t.TYPE_CHECKING:
    import numpy as np
    from ase.calculators.calculator import Calculator


class DeepmdBackend(Backend):
    """DeePMD-kit models: se_e2_a, se_atten_v2, DPA-2, DPA-3..., single- or multi-task."""

    name = 'deepmd'
    suffixes: t.ClassVar[dict[str, str]] = {'checkpoint': '.pt', 'frozen': '.pth'}
    train_process = 'pfd.deepmd.train'
    train_workchain = 'pfd.deepmd.train.base'
    train_code = 'dp'
    learning_rate_keys = ('learning_rate', 'start_lr')
    default_learning_rate = 1e-3  # DeePMD-kit's own default
    scaled_with_learning_rate = (('learning_rate', 'stop_lr'),)

    def finetune_inputs(self, *, code, foundation, training_set, parameters, model_branch=None, options=None) -> dict:
        """``dp --pt train --finetune`` with the model section taken from the checkpoint (``--use-pretrain-script``).

        A DPA-4 / SeZM foundation is not frozen: its AOTInductor freeze takes ~9 min on 2 CPU cores and the ``.pt2`` is
        only ~1.3x faster in ASE than the checkpoint, which the loop's MD and labelling then use directly.
        """
        from aiida import orm

        freeze = foundation.base.attributes.get('model_type', None) not in AOT_FROZEN_TYPES
        inputs = {
            'code': code,
            'training_set': training_set,
            'finetune_from': foundation,
            'parameters': orm.Dict(parameters),
            'settings': orm.Dict({'use_pretrain_script': 'model' not in parameters, 'freeze': freeze}),
            'metadata': {'options': dict(options or {})},
        }
        if model_branch:
            inputs['model_branch'] = orm.Str(model_branch)
        return inputs

    def read_metadata(self, path: pathlib.Path) -> ModelMetadata:
        import zipfile

        path = pathlib.Path(path)
        problem = (
            f'`{path.name}` is not a DeePMD-kit PyTorch model (a `dp --pt train` checkpoint or `dp --pt freeze` model)'
        )
        if not zipfile.is_zipfile(path):
            raise ValueError(f'{problem}: it is not a PyTorch archive.')
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        try:
            if PT2_METADATA in names:
                return read_pt2_metadata(path)
            is_torchscript = any('/code/' in name for name in names)
            return read_frozen_metadata(path) if is_torchscript else read_checkpoint_metadata(path)
        except Exception as exception:
            raise ValueError(f'{problem}: {exception}') from exception

    def energy_shift_refusal(self, kind: str, heads: t.Sequence[str]) -> str | None:
        if kind != 'checkpoint':
            return 'only a DeePMD-kit checkpoint (.pt) can have its energy zero shifted, not a frozen model.'
        if heads:
            return 'a multi-task DeePMD-kit checkpoint: its branches have their own energy zeros; shift none.'
        return None

    def shift_energy(self, path: pathlib.Path, offsets: dict[str, float], target: pathlib.Path) -> None:
        """Add ``offsets`` (eV per atom of each element) to a single-task checkpoint's output bias.

        DeePMD's atomic energy is the network's output plus ``atomic_model.out_bias[0, type]``; ``--finetune`` refits
        that bias itself, so a shifted foundation serves comparisons (the aligned zero-shot model) and replay labels.
        """
        import torch

        metadata = self.read_metadata(path)
        refusal = self.energy_shift_refusal(metadata.kind, metadata.heads)
        if refusal:
            raise ValueError(f'`{pathlib.Path(path).name}`: {refusal}')
        state = torch.load(path, map_location='cpu', weights_only=False)
        model = state['model']
        keys = [key for key in model if key.endswith('atomic_model.out_bias')]
        if len(keys) != 1:
            raise ValueError(f'`{pathlib.Path(path).name}` has {len(keys)} output biases; expected one.')
        type_map = list(metadata.type_map)
        unknown = sorted(set(offsets) - set(type_map))
        if unknown:
            raise ValueError(f'the model has no type {unknown}.')
        bias = model[keys[0]].clone()
        for element, offset in offsets.items():
            bias[0, type_map.index(element), 0] += float(offset)
        model[keys[0]] = bias
        torch.save(state, target)

    def calculator(self, path: pathlib.Path, head: str | None = None, device: str | None = None) -> Calculator:
        from deepmd.calculator import DP

        kwargs = {'head': head} if head else {}
        return DP(model=str(path), **kwargs)


def read_checkpoint_metadata(path: pathlib.Path) -> ModelMetadata:
    """Metadata of a ``dp --pt train`` checkpoint: a pickled dict whose ``model._extra_state`` holds the parameters."""
    import torch

    state = torch.load(path, map_location='cpu', weights_only=False)
    model = state.get('model', state) if isinstance(state, dict) else None
    params = model.get('_extra_state', {}).get('model_params') if isinstance(model, dict) else None
    if not isinstance(params, dict):
        raise ValueError('the archive holds no DeePMD-kit model parameters (`model._extra_state.model_params`).')

    if 'model_dict' in params:
        heads = sorted(params['model_dict'])
        type_maps = {tuple(params['model_dict'][head]['type_map']) for head in heads}
        type_map = list(max(type_maps, key=len))
        descriptor = _descriptor_type(params['model_dict'][heads[0]], params.get('shared_dict', {}))
    else:
        heads, type_map = [], list(params['type_map'])
        descriptor = _descriptor_type(params, {})
    model_type = params.get('type') if not heads else params['model_dict'][heads[0]].get('type')
    extras = {'descriptor': descriptor, 'model_type': model_type}
    return ModelMetadata(kind='checkpoint', type_map=type_map, heads=heads, extras=extras)


def _descriptor_type(model_params: dict, shared: dict) -> str | None:
    descriptor = model_params.get('descriptor')
    if isinstance(descriptor, str):  # a multi-task key into shared_dict
        descriptor = shared.get(descriptor, {})
    return descriptor.get('type') if isinstance(descriptor, dict) else None


def read_frozen_metadata(path: pathlib.Path) -> ModelMetadata:
    """Metadata of a ``dp --pt freeze`` TorchScript model."""
    import deepmd.pt  # noqa: F401  registers DeePMD's custom operators (e.g. DPA-3's border_op) with TorchScript
    import torch

    module = torch.jit.load(str(path), map_location='cpu')
    return ModelMetadata(kind='frozen', type_map=list(module.get_type_map()), extras={'rcut': float(module.get_rcut())})


#: The metadata member of a ``dp --pt freeze`` AOTInductor archive (DPA-4 / SeZM models).
PT2_METADATA = 'model/extra/metadata.json'


def read_pt2_metadata(path: pathlib.Path) -> ModelMetadata:
    """Metadata of a ``dp --pt freeze`` AOTInductor archive (``.pt2``), from its JSON member; nothing is loaded."""
    import ast
    import json
    import zipfile

    with zipfile.ZipFile(path) as archive:
        metadata = json.loads(archive.read(PT2_METADATA))
    type_map = metadata['type_map']
    if isinstance(type_map, str):
        type_map = ast.literal_eval(type_map)
    return ModelMetadata(kind='frozen', type_map=list(type_map), extras={'rcut': float(metadata['rcut'])})


# -- training -------------------------------------------------------------------------------------------------------

TRAIN_INPUT = 'input.json'
LCURVE = 'lcurve.out'
FROZEN_MODEL = 'frozen_model.pth'
#: What ``dp --pt freeze -o frozen_model.pth`` writes for a DPA-4 / SeZM checkpoint: an AOTInductor archive.
FROZEN_MODEL_PT2 = 'frozen_model.pt2'
#: Model types whose checkpoints ``dp --pt freeze`` compiles with AOTInductor: ~9 min on 2 CPU cores.
AOT_FROZEN_TYPES = ('dpa4', 'sezm')
COMPRESSED_MODEL = 'frozen_model_compressed.pth'
#: Options of ``dp --pt compress`` (its own long flag names) and their types.
COMPRESS_OPTIONS = {'step': float, 'extrapolate': int, 'frequency': int}
CHECKPOINT_GLOB = 'model.ckpt-*.pt'


def training_input(
    parameters: dict,
    type_map: list[str],
    training_systems: list[str],
    validation_systems: list[str] | None = None,
    model_type: str | None = None,
) -> dict:
    """Complete a DeePMD input.json (DeePMD's own keys) with the type map and the data systems of this job.

    The user's ``model.type_map`` wins if given; so does ``model.type``, which defaults to ``model_type`` (the
    foundation's, e.g. ``dpa4``: DeePMD needs it even with ``--use-pretrain-script``).
    ``training.training_data.systems`` and ``training.validation_data.systems`` are always set from the job's
    datasets. ``max_ckpt_keep`` defaults to 1 so that only the final checkpoint is retrieved.
    """
    import copy

    settings = copy.deepcopy(parameters)
    settings.setdefault('model', {}).setdefault('type_map', list(type_map))
    if model_type and model_type != 'standard':
        settings['model'].setdefault('type', model_type)
    training = settings.setdefault('training', {})
    training.setdefault('training_data', {})['systems'] = list(training_systems)
    if validation_systems:
        training.setdefault('validation_data', {})['systems'] = list(validation_systems)
        training['validation_data'].setdefault('batch_size', 1)
    else:
        training.pop('validation_data', None)
    training.setdefault('max_ckpt_keep', 1)
    return settings


def train_arguments(
    finetune: str | None = None, model_branch: str | None = None, use_pretrain_script: bool = False
) -> list[str]:
    """Arguments of ``dp`` for training, or fine-tuning from checkpoint ``finetune`` (branch ``model_branch``).

    ``use_pretrain_script`` takes the model section from the checkpoint instead of input.json.
    """
    arguments = ['--pt', 'train', TRAIN_INPUT]
    if finetune:
        arguments += ['--finetune', finetune]
        if model_branch:
            arguments += ['--model-branch', model_branch]
        if use_pretrain_script:
            arguments.append('--use-pretrain-script')
    return arguments


def freeze_arguments() -> list[str]:
    """Arguments of ``dp`` that freeze the last checkpoint of the job folder."""
    return ['--pt', 'freeze', '-o', FROZEN_MODEL]


def compress_arguments(options: dict | None = None) -> list[str]:
    """Arguments of ``dp`` that compress the frozen model (tabulated embedding nets); ``options`` are
    ``dp --pt compress`` flags: ``step`` (table stride), ``extrapolate``, ``frequency`` (overflow check).

    The training input is passed so that DeePMD can count the neighbour distances when the model lacks them.
    """
    arguments = ['--pt', 'compress', '-i', FROZEN_MODEL, '-o', COMPRESSED_MODEL, '-t', TRAIN_INPUT]
    for key, value in sorted((options or {}).items()):
        arguments += [f'--{key}', str(value)]
    return arguments


def read_lcurve(text: str) -> tuple[list[str], np.ndarray]:
    """Column names and values of a DeePMD ``lcurve.out``."""
    import io

    import numpy as np

    header = next((line for line in text.splitlines() if line.startswith('#') and 'step' in line), None)
    if header is None:
        raise ValueError('no header line with `step` found in lcurve.out.')
    columns = header.lstrip('#').split()
    values = np.loadtxt(io.StringIO(text), comments='#', ndmin=2)
    if values.shape[1] != len(columns):
        raise ValueError(f'lcurve.out has {values.shape[1]} columns but its header names {len(columns)}.')
    return columns, values
