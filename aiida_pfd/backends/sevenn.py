"""SevenNet (``sevenn``): checkpoints (``.pth``), deployed TorchScript models (``.pt``), fine-tuning with ``sevenn``.

What sevenn 0.13 does, and what this module relies on:

* A checkpoint is a ``torch.save`` dict with ``config`` (model, train and data settings, ``chemical_species``,
  ``cutoff``...), ``model_state_dict``, ``optimizer_state_dict``, ``scheduler_state_dict`` and ``epoch``. The universal
  models ship inside the package (``sevenn/pretrained_potentials``), found with ``sevenn.util.pretrained_name_to_path``.
* ``sevenn get_model`` deploys a checkpoint to TorchScript for LAMMPS (``deployed_serial.pt``); its element list and
  cutoff are extra files of the archive. sevenn's ASE calculator no longer runs TorchScript: use the checkpoint.
* Fine-tuning is ``sevenn train input.yaml`` (here ``python -m sevenn.main.sevenn train input.yaml``) with sevenn's own
  YAML (``model``, ``train``, ``data`` sections) and ``train.continue.checkpoint`` naming the foundation. The ``model``
  section must repeat the checkpoint's architecture (only ``train_shift_scale`` and ``train_denominator`` may change);
  shift, scale and convolution denominators are always taken from the checkpoint. Data files ending in ``.extxyz``
  are read with ``ase.io.read``; labels come from the frames' calculator (energy in eV, forces in eV/Å, stress in
  eV/Å³, ASE's sign and Voigt order).
* It writes ``log.sevenn``, ``lc.csv`` (one row per epoch: ``epoch,lr,trainset_Energy_RMSE,...,validset_TotalLoss``),
  ``checkpoint_0.pth`` (the start), ``checkpoint_<epoch>.pth`` every ``train.per_epoch`` epochs and
  ``checkpoint_best.pth`` (lowest validation ``TotalLoss``; only with a validation set).
"""

from __future__ import annotations

import copy
import pathlib
import typing as t
import zipfile

from .base import Backend, ModelMetadata

if t.TYPE_CHECKING:
    import numpy as np
    from ase.calculators.calculator import Calculator

#: Universal models shipped inside the ``sevenn`` package: PFD's name -> sevenn's pretrained name.
SHIPPED = {'sevennet-0': '7net-0', 'sevennet-l3i5': '7net-l3i5'}


class SevennBackend(Backend):
    """SevenNet models (SevenNet-0, SevenNet-l3i5 and their fine-tuned checkpoints)."""

    name = 'sevenn'
    suffixes: t.ClassVar[dict[str, str]] = {'checkpoint': '.pth', 'frozen': '.pt'}
    shipped = SHIPPED

    train_process = 'pfd.sevenn.train'
    train_workchain = 'pfd.sevenn.train.base'
    train_code = 'python'
    seed_key = ('train', 'random_seed')
    learning_rate_keys = ('train', 'optim_param', 'lr')
    needs_energy_alignment = True

    @property
    def default_learning_rate(self) -> float:
        return FINETUNE_DEFAULTS['train']['optim_param']['lr']

    def finetune_inputs(self, *, code, foundation, training_set, parameters, model_branch=None, options=None) -> dict:
        """``pfd.sevenn.train`` inputs; ``parameters`` are sevenn's own config sections (``train``, ``data``...)."""
        from aiida import orm

        if model_branch:
            raise ValueError('SevenNet models have no branches: leave `model_branch` out.')
        return {
            'code': code,
            'training_set': training_set,
            'finetune_from': foundation,
            'parameters': orm.Dict(parameters),
            'metadata': {'options': dict(options or {})},
        }

    def read_metadata(self, path: pathlib.Path) -> ModelMetadata:
        path = pathlib.Path(path)
        problem = f'`{path.name}` is not a SevenNet model (a `sevenn` checkpoint or a `sevenn get_model` deployment)'
        if not zipfile.is_zipfile(path):
            raise ValueError(f'{problem}: it is not a PyTorch archive.')
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            extras = {name.rsplit('/', 1)[-1]: name for name in names if '/extra/' in name}
            if any('/code/' in name for name in names):
                if 'chemical_symbols_to_index' not in extras:
                    raise ValueError(f'{problem}: a TorchScript model without sevenn metadata.')
                info = {key: archive.read(name).decode() for key, name in extras.items()}
                return ModelMetadata(
                    kind='frozen',
                    type_map=info['chemical_symbols_to_index'].split(),
                    extras={'cutoff': float(info['cutoff']), 'sevenn_version': info.get('version')},
                )
        try:
            return read_checkpoint_metadata(path)
        except Exception as exception:
            raise ValueError(f'{problem}: {exception}') from exception

    def calculator(self, path: pathlib.Path, head: str | None = None, device: str | None = None) -> Calculator:
        """sevenn's ``SevenNetCalculator`` on ``device`` (default: CUDA if available); ``head`` is the modality."""
        from sevenn.calculator import SevenNetCalculator

        if _is_torchscript(path):
            raise ValueError(
                f'`{pathlib.Path(path).name}` is a deployed TorchScript model, which sevenn runs only in LAMMPS '
                '(pair_style e3gnn); use its checkpoint (.pth) for ASE.'
            )
        return SevenNetCalculator(model=str(path), file_type='checkpoint', device=device or 'auto', modal=head)

    def energy_shift_refusal(self, kind: str, heads: t.Sequence[str]) -> str | None:
        return None if kind == 'checkpoint' else 'only a sevenn checkpoint can have its energy zero shifted.'

    def shift_energy(self, path: pathlib.Path, offsets: dict[str, float], target: pathlib.Path) -> None:
        """Add ``offsets`` (eV per atom of each element) to the checkpoint's species-wise energy shift.

        SevenNet's atomic energy is ``scale * output + shift``; SevenNet-0 has a shift per species (MPtrj's energy
        zero), which a DFT code with other pseudopotentials puts tens of eV per atom elsewhere. The shift lives in
        ``model_state_dict['rescale_atomic_energy.shift']`` and in the config (``shift``, ``shift_cp``).
        """
        import numpy as np
        import torch

        state = torch.load(path, map_location='cpu', weights_only=False)
        if _is_torchscript(path) or 'model_state_dict' not in state:
            raise ValueError(f'`{pathlib.Path(path).name}` is not a sevenn checkpoint: cannot shift its energy.')
        config = state['config']
        species = list(config['chemical_species'])
        unknown = sorted(set(offsets) - set(species))
        if unknown:
            raise ValueError(f'the model has no species {unknown}.')
        if not config.get('use_species_wise_shift_scale'):
            raise ValueError('the model has one energy shift for all species: it cannot take per-element offsets.')
        key = 'rescale_atomic_energy.shift'
        shift = state['model_state_dict'][key].clone()
        for element, offset in offsets.items():
            shift[species.index(element)] += float(offset)
        state['model_state_dict'][key] = shift
        for name in ('shift', 'shift_cp'):
            if name in config:
                values = np.array(config[name], dtype=np.float64)
                for element, offset in offsets.items():
                    values[species.index(element)] += float(offset)
                config[name] = (
                    values.astype(np.asarray(config[name]).dtype)
                    if hasattr(config[name], 'dtype')
                    else (values.tolist())
                )
        torch.save(state, target)

    def shipped_path(self, name: str) -> pathlib.Path:
        """Path of the shipped model ``name`` (a key of :data:`SHIPPED`) inside the installed ``sevenn``."""
        from sevenn.util import pretrained_name_to_path

        return pathlib.Path(pretrained_name_to_path(SHIPPED[name]))


def _is_torchscript(path: pathlib.Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return any('/code/' in name for name in archive.namelist())


def read_checkpoint_metadata(path: pathlib.Path) -> ModelMetadata:
    """Metadata of a sevenn checkpoint; ``extras`` hold ``cutoff``, ``epoch``, ``sevenn_version`` and ``model_config``.

    ``model_config`` is the ``model`` section of an input.yaml that continues from this checkpoint (sevenn's
    ``SevenNetCheckpoint.yaml_dict('continue')``): fine-tuning writes it back unchanged.
    """
    import warnings

    import torch
    from sevenn.checkpoint import SevenNetCheckpoint

    state = torch.load(path, map_location='cpu', weights_only=False)
    if not isinstance(state, dict) or 'config' not in state or 'model_state_dict' not in state:
        raise ValueError('the archive holds no sevenn `config` and `model_state_dict`.')
    checkpoint = SevenNetCheckpoint(path)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # e.g. 'checkpoint version too old, yaml may wrong' for SevenNet-0
        config = checkpoint.config
        model_config = checkpoint.yaml_dict('continue')['model']
    return ModelMetadata(
        kind='checkpoint',
        type_map=list(config['chemical_species']),
        heads=list(config.get('_modal_map') or {}),
        extras={
            'cutoff': float(config['cutoff']),
            'epoch': checkpoint.epoch,
            'sevenn_version': config.get('version'),
            'model_config': _plain(model_config),
        },
    )


def _plain(value):
    """``value`` with tuples as lists and numpy/torch scalars as Python numbers, for node attributes."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, 'item') and callable(value.item):
        return value.item()
    return value


# -- fine-tuning ----------------------------------------------------------------------------------------------------

TRAIN_INPUT = 'input.yaml'
LOG = 'log.sevenn'
LEARNING_CURVE = 'lc.csv'
BEST_CHECKPOINT = 'checkpoint_best.pth'
TRAINING_FILE = 'datasets/training.extxyz'
VALIDATION_FILE = 'datasets/validation.extxyz'

#: ``model`` keys that may differ from the foundation when fine-tuning (sevenn: "customizable").
TRAINABLE_MODEL_KEYS = ('train_shift_scale', 'train_denominator')
#: Keys the job sets itself, as (section, key).
JOB_KEYS = (
    ('data', 'load_trainset_path'),
    ('data', 'load_validset_path'),
    ('data', 'load_testset_path'),
    ('train', 'continue'),
)

#: Fine-tuning defaults, after sevenn's ``presets/fine_tune.yaml``; ``per_epoch`` defaults to ``epoch``.
FINETUNE_DEFAULTS = {
    'train': {
        'random_seed': 1,
        'epoch': 100,
        'loss': 'Huber',
        'loss_param': {'delta': 0.01},
        'optimizer': 'adam',
        'optim_param': {'lr': 0.004},
        'scheduler': 'exponentiallr',
        'scheduler_param': {'gamma': 0.99},
        'force_loss_weight': 1.0,
        'stress_loss_weight': 0.01,
        'best_metric': 'TotalLoss',
    },
    'data': {'batch_size': 4, 'data_divide_ratio': 0.1},
}


def checkpoint_name(epoch: int) -> str:
    """File name of the checkpoint sevenn writes after epoch ``epoch``."""
    return f'checkpoint_{int(epoch)}.pth'


def _merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def finetune_input(
    parameters: dict,
    model_config: dict,
    checkpoint: str,
    training_file: str = TRAINING_FILE,
    validation_file: str | None = None,
    train_stress: bool = False,
) -> dict:
    """sevenn's input.yaml (as a dict) that fine-tunes ``checkpoint`` on ``training_file``.

    ``parameters`` (sevenn's own keys, ``model``/``train``/``data`` sections) are merged over
    :data:`FINETUNE_DEFAULTS`; ``model`` is the foundation's ``model_config`` with the user's trainable keys;
    ``train.is_train_stress`` defaults to ``train_stress``; ``train.per_epoch`` defaults to ``train.epoch`` so that
    the last epoch's checkpoint is written; ``continue`` resets optimizer, scheduler and epoch. Without
    ``validation_file`` sevenn splits off ``data.data_divide_ratio`` of the training frames (seeded by
    ``train.random_seed``).
    """
    settings = _merge(FINETUNE_DEFAULTS, {key: value for key, value in parameters.items() if key != 'model'})
    settings['model'] = _merge(model_config, parameters.get('model', {}))
    train = settings['train']
    train.setdefault('is_train_stress', bool(train_stress))
    train.setdefault('per_epoch', train['epoch'])
    quantities = ['Energy', 'Force'] + (['Stress'] if train['is_train_stress'] else [])
    train.setdefault(
        'error_record',
        [[quantity, 'RMSE'] for quantity in quantities]
        + [[quantity, 'MAE'] for quantity in quantities]
        + [['TotalLoss', 'None']],
    )
    train['continue'] = {
        'checkpoint': checkpoint,
        'reset_optimizer': True,
        'reset_scheduler': True,
        'reset_epoch': True,
    }
    data = settings['data']
    data['load_trainset_path'] = [training_file]
    if validation_file:
        data['load_validset_path'] = [validation_file]
        data.pop('data_divide_ratio', None)
    return {'model': settings['model'], 'train': train, 'data': data}


def check_parameters(parameters: dict, model_config: dict, has_virial: bool) -> str | None:
    """A message naming the problem with fine-tuning ``parameters``, or None."""
    unknown = sorted(set(parameters) - {'model', 'train', 'data'})
    if unknown:
        return f'parameters: unknown sections {unknown}; sevenn reads `model`, `train` and `data`.'
    for section, key in JOB_KEYS:
        if key in parameters.get(section, {}):
            return f'parameters: `{section}.{key}` is set by the job from its inputs; remove it.'
    for key, value in parameters.get('model', {}).items():
        if key not in TRAINABLE_MODEL_KEYS and key in model_config and value != model_config[key]:
            return (
                f'parameters: `model.{key}` must equal the foundation model ({model_config[key]!r}); fine-tuning can '
                f'change only {", ".join(f"`model.{k}`" for k in TRAINABLE_MODEL_KEYS)}.'
            )
    train = parameters.get('train', {})
    if train.get('is_train_stress') and not has_virial:
        return 'parameters: `train.is_train_stress` is true but the datasets have no virials; remove it.'
    epoch = train.get('epoch', FINETUNE_DEFAULTS['train']['epoch'])
    if not isinstance(epoch, int) or epoch < 1:
        return f'parameters: `train.epoch` must be a positive integer, got {epoch!r}.'
    per_epoch = train.get('per_epoch', epoch)
    if not isinstance(per_epoch, int) or per_epoch < 1 or epoch % per_epoch:
        return (
            f'parameters: `train.epoch` ({epoch}) must be a multiple of `train.per_epoch` ({per_epoch!r}) so that '
            'the last epoch writes a checkpoint.'
        )
    return None


def train_arguments() -> list[str]:
    """Arguments of ``python`` that run ``sevenn train`` on :data:`TRAIN_INPUT`, logging to :data:`LOG`."""
    return ['-m', 'sevenn.main.sevenn', 'train', TRAIN_INPUT, '--log', LOG]


def write_dataset(dataset, target) -> None:
    """Write a labelled ``pfd.dataset`` as extended XYZ that sevenn's ASE reader takes (energy, forces, stress)."""
    dataset.to_extxyz(target)


def read_learning_curve(text: str) -> tuple[list[str], np.ndarray]:
    """Column names and values (one row per epoch) of sevenn's ``lc.csv``."""
    import numpy as np

    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError('lc.csv is empty.')
    columns = [column.strip() for column in lines[0].split(',')]
    if columns[:2] != ['epoch', 'lr']:
        raise ValueError(f'lc.csv header starts with {columns[:2]}, not `epoch,lr`.')
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split(',')
        if len(fields) != len(columns):
            raise ValueError(f'line {number} has {len(fields)} fields, the header {len(columns)}.')
        try:
            rows.append([float(field) for field in fields])
        except ValueError as exception:
            raise ValueError(f'line {number}: {exception}') from None
    if not rows:
        raise ValueError('lc.csv has no epoch rows.')
    return columns, np.array(rows, dtype=float)


_QUANTITIES = {
    'Energy': ('e', 'eV/atom'),
    'TotalEnergy': ('e_total', 'eV'),
    'Force': ('f', 'eV/Å'),
    'Stress': ('s', 'kbar'),
    'Stress_GPa': ('s_gpa', 'GPa'),
}
_SETS = {'trainset': 'trn', 'validset': 'val'}


def semantic_name(column: str) -> tuple[str, str | None]:
    """DeePMD-like name and unit of an ``lc.csv`` column: ``validset_Force_RMSE`` -> (``rmse_f_val``, ``eV/Å``)."""
    prefix, _, rest = column.partition('_')
    if prefix not in _SETS:
        return column, None
    if rest == 'TotalLoss':
        return f'loss_{_SETS[prefix]}', None
    quantity, _, metric = rest.rpartition('_')
    if quantity not in _QUANTITIES:
        return column, None
    short, unit = _QUANTITIES[quantity]
    return f'{metric.lower()}_{short}_{_SETS[prefix]}', unit


def metrics_of_row(columns: list[str], row) -> tuple[dict, dict]:
    """One ``lc.csv`` row as ``{semantic name: value}`` plus ``{metric family: unit}`` (e.g. ``rmse_f: eV/Å``).

    A value that is not finite (e.g. validation errors without validation frames) becomes ``None``.
    """
    import math

    values, units = {}, {}
    for column, value in zip(columns, row):
        name, unit = semantic_name(column)
        value = float(value)
        values[name] = int(value) if name == 'epoch' else (value if math.isfinite(value) else None)
        if unit:
            units[name.rsplit('_', 1)[0]] = unit
    return values, units
