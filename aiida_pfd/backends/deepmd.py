"""DeePMD-kit (PyTorch backend): checkpoints (``.pt``), frozen models (``.pth``), ``dp`` command lines."""

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
    train_code = 'dp'

    def finetune_inputs(self, *, code, foundation, training_set, parameters, model_branch=None, options=None) -> dict:
        """``dp --pt train --finetune`` with the model section taken from the checkpoint (``--use-pretrain-script``)."""
        from aiida import orm

        inputs = {
            'code': code,
            'training_set': training_set,
            'finetune_from': foundation,
            'parameters': orm.Dict(parameters),
            'settings': orm.Dict({'use_pretrain_script': 'model' not in parameters}),
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
            is_torchscript = any('/code/' in name for name in archive.namelist())
        try:
            return read_frozen_metadata(path) if is_torchscript else read_checkpoint_metadata(path)
        except Exception as exception:
            raise ValueError(f'{problem}: {exception}') from exception

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
    return ModelMetadata(kind='checkpoint', type_map=type_map, heads=heads, extras={'descriptor': descriptor})


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


# -- training -------------------------------------------------------------------------------------------------------

TRAIN_INPUT = 'input.json'
LCURVE = 'lcurve.out'
FROZEN_MODEL = 'frozen_model.pth'
COMPRESSED_MODEL = 'frozen_model_compressed.pth'
#: Options of ``dp --pt compress`` (its own long flag names) and their types.
COMPRESS_OPTIONS = {'step': float, 'extrapolate': int, 'frequency': int}
CHECKPOINT_GLOB = 'model.ckpt-*.pt'


def training_input(
    parameters: dict,
    type_map: list[str],
    training_systems: list[str],
    validation_systems: list[str] | None = None,
) -> dict:
    """Complete a DeePMD input.json (DeePMD's own keys) with the type map and the data systems of this job.

    The user's ``model.type_map`` wins if given; ``training.training_data.systems`` and
    ``training.validation_data.systems`` are always set from the job's datasets. ``max_ckpt_keep`` defaults to 1 so
    that only the final checkpoint is retrieved.
    """
    import copy

    settings = copy.deepcopy(parameters)
    settings.setdefault('model', {}).setdefault('type_map', list(type_map))
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
