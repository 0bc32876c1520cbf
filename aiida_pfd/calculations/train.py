"""``pfd.deepmd.train``: train a DeePMD model from scratch, or fine-tune a checkpoint, then freeze it."""

from __future__ import annotations

from aiida import orm
from aiida.common import datastructures
from aiida.engine import CalcJob

from ..backends import deepmd
from ..data import LabeledDataset, ModelData

TRAIN_LOG = 'train.log'
FREEZE_LOG = 'freeze.log'
COMPRESS_LOG = 'compress.log'
FOUNDATION_DIR = 'foundation'
PAIR_TABLE = 'pair_table.txt'


def compress_options(settings: dict) -> dict | None:
    """The ``dp --pt compress`` options of ``settings['compress']`` (``True``: defaults), or None: no compression."""
    value = settings.get('compress', False)
    if value is False or value is None:
        return None
    return {} if value is True else dict(value)


def check_compress(value) -> str | None:
    """What is wrong with ``settings['compress']``, or None."""
    if isinstance(value, bool) or value is None:
        return None
    if not isinstance(value, dict):
        return f'settings: `compress` is {value!r}; give True, False or a dict of `dp compress` options.'
    unknown = sorted(set(value) - set(deepmd.COMPRESS_OPTIONS))
    if unknown:
        return f'settings: `compress` has unknown options {unknown}; the options are {sorted(deepmd.COMPRESS_OPTIONS)}.'
    for key, kind in deepmd.COMPRESS_OPTIONS.items():
        if key in value and (isinstance(value[key], bool) or not isinstance(value[key], (int, float))):
            return f'settings: `compress.{key}` is {value[key]!r}; give a number ({kind.__name__}).'
    if value.get('step', 0.01) <= 0 or value.get('extrapolate', 5) < 1:
        return 'settings: `compress.step` must be > 0 and `compress.extrapolate` >= 1.'
    return None


def validate_inputs(inputs, _=None) -> str | None:
    """Check datasets, foundation model and parameters together; return a message naming the port and the fix."""
    training_set = inputs.get('training_set')
    if training_set is not None and not training_set.is_labelled:
        return 'training_set: the dataset has no energies and forces; label it first (e.g. with `pfd.label`).'
    validation_set = inputs.get('validation_set')
    if validation_set is not None and not validation_set.is_labelled:
        return 'validation_set: the dataset has no energies and forces; label it first.'

    parameters = inputs['parameters'].get_dict() if 'parameters' in inputs else {}
    settings = inputs['settings'].get_dict() if 'settings' in inputs else {}
    foundation = inputs.get('finetune_from')
    branch = inputs['model_branch'].value if 'model_branch' in inputs else None

    if foundation is None:
        if branch:
            return 'model_branch: only meaningful with `finetune_from`.'
        if 'descriptor' not in parameters.get('model', {}) or 'fitting_net' not in parameters.get('model', {}):
            return 'parameters: training from scratch needs `model.descriptor` and `model.fitting_net`.'
    else:
        if foundation.model_backend != 'deepmd' or foundation.kind != 'checkpoint':
            return (
                f'finetune_from: needs a DeePMD-kit training checkpoint (.pt), got a {foundation.kind} '
                f'{foundation.model_backend} model.'
            )
        if branch and branch not in foundation.heads:
            heads = ', '.join(foundation.heads) or 'none: it is a single-task model'
            return f'model_branch: `{branch}` is not a branch of the foundation model (branches: {heads}).'
        if 'model' not in parameters and not settings.get('use_pretrain_script'):
            return 'parameters: give a `model` section, or set `use_pretrain_script: True` in `settings`.'
        elements = set(training_set.elements if training_set else [])
        if validation_set is not None:
            elements |= set(validation_set.elements)
        missing = foundation.missing_elements(sorted(elements))
        if missing:
            return (
                f'training_set: elements {missing} are not in the type map of the foundation model '
                f'({", ".join(foundation.type_map)}); choose a foundation that covers them.'
            )

    if 'numb_steps' not in parameters.get('training', {}):
        return 'parameters: `training.numb_steps` is required.'
    if 'pair_table' in inputs:
        if foundation is not None:
            return 'pair_table: only for a model trained from scratch (a fine-tuned model keeps its own definition).'
        model = parameters.get('model', {})
        absent = [key for key in ('sw_rmin', 'sw_rmax') if key not in model]
        if absent:
            return (
                f'parameters: with `pair_table`, set `model.{absent[0]}` (Å): the network is blended with the table '
                'between `sw_rmin` and `sw_rmax`.'
            )
        if not 0 < model['sw_rmin'] < model['sw_rmax']:
            return 'parameters: give 0 < `model.sw_rmin` < `model.sw_rmax`.'
    if not isinstance(settings.get('freeze', True), bool):
        freeze = settings['freeze']
        return f'settings: `freeze` is {freeze!r}; give True (freeze the model) or False (use the checkpoint).'
    if settings.get('freeze', True) is False and compress_options(settings) is not None:
        return 'settings: `compress` needs the frozen model; drop `compress` or set `freeze: True`.'
    return check_compress(settings.get('compress'))


class DeepmdTrainCalculation(CalcJob):
    """Run ``dp --pt train`` (optionally ``--finetune``) and ``dp --pt freeze`` on a ``pfd.dataset``, and with
    ``settings.compress`` ``dp --pt compress`` on the frozen model."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('metadata.options.withmpi', valid_type=bool, default=False)
        spec.input('metadata.options.output_filename', valid_type=str, default=TRAIN_LOG)
        spec.input('metadata.options.parser_name', valid_type=str, default='pfd.deepmd.train')
        spec.inputs['metadata']['options']['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        spec.input('training_set', valid_type=LabeledDataset, help='Labelled frames to train on.')
        spec.input('validation_set', valid_type=LabeledDataset, required=False, help='Labelled frames to validate on.')
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            help='DeePMD-kit input.json with its own keys (model, learning_rate, loss, training). The data systems '
            "are filled in from the datasets; `model.type_map` defaults to the foundation's or the dataset's.",
        )
        spec.input('finetune_from', valid_type=ModelData, required=False, help='Checkpoint to fine-tune.')
        spec.input('model_branch', valid_type=orm.Str, required=False, help='Branch of a multi-task checkpoint.')
        spec.input(
            'pair_table',
            valid_type=orm.SinglefileData,
            required=False,
            help='A DeePMD pair table (e.g. `aiida_pfd.zbl.zbl_pair_table`) blended with the network at short range '
            '(`model.use_srtab`); `model.sw_rmin` and `model.sw_rmax` in `parameters` set the blending range.',
        )
        spec.input(
            'settings',
            valid_type=orm.Dict,
            required=False,
            help='`use_pretrain_script` (bool): model from checkpoint; `freeze` (bool, default True; False: the '
            '`model` output is the last checkpoint, which DeePMD evaluates as well: a DPA-4 checkpoint freezes to an '
            'AOTInductor .pt2 in ~9 min on 2 CPU cores); `compress` (bool, or a dict of `dp compress` '
            'options `step`, `extrapolate`, `frequency`): also compress the frozen model.',
        )
        spec.inputs.validator = validate_inputs

        spec.output(
            'model',
            valid_type=ModelData,
            help='The model for inference: the frozen model (.pth; .pt2 for DPA-4), or with `settings.freeze` False a '
            'copy of the last checkpoint.',
        )
        spec.output(
            'compressed_model',
            valid_type=ModelData,
            required=False,
            help='The frozen model compressed by `dp --pt compress` (with `settings.compress`): same physics, '
            'tabulated embedding nets, faster MD.',
        )
        spec.output('checkpoint', valid_type=ModelData, help='The last checkpoint (.pt), for further fine-tuning.')
        spec.output('learning_curve', valid_type=orm.ArrayData, help='lcurve.out: one array per column.')
        spec.output('metrics', valid_type=orm.Dict, help='Last lcurve.out row: final training/validation RMSEs.')
        spec.default_output_node = 'metrics'

        spec.exit_code(
            301,
            'ERROR_MISSING_LCURVE',
            invalidates_cache=True,
            message='lcurve.out was not written and train.log shows no error.',
        )
        spec.exit_code(302, 'ERROR_TRAINING_FAILED', invalidates_cache=True, message='`dp train` failed: {message}')
        spec.exit_code(
            303,
            'ERROR_MISSING_MODEL',
            invalidates_cache=True,
            message='The frozen model or the checkpoint is missing: {message}',
        )
        spec.exit_code(
            304,
            'ERROR_COMPRESSION_FAILED',
            invalidates_cache=True,
            message='`dp compress` gave no compressed model (the frozen model and checkpoint are kept): {message}',
        )
        spec.exit_code(
            310, 'ERROR_INVALID_LCURVE', invalidates_cache=True, message='lcurve.out could not be parsed: {message}'
        )
        spec.exit_code(
            311, 'ERROR_INVALID_MODEL', invalidates_cache=True, message='A model file could not be read: {message}'
        )
        spec.exit_code(
            400,
            'ERROR_NON_FINITE_LOSS',
            invalidates_cache=True,
            message='The training loss became NaN or infinite at step {step}.',
        )

    def prepare_for_submission(self, folder):
        import json

        training_set = self.inputs.training_set
        local_copy_list = [(training_set.uuid, 'systems', 'datasets/training')]
        training_systems = [f'datasets/training/{name}' for name in training_set.system_names]
        validation_systems = None
        if 'validation_set' in self.inputs:
            validation = self.inputs.validation_set
            local_copy_list.append((validation.uuid, 'systems', 'datasets/validation'))
            validation_systems = [f'datasets/validation/{name}' for name in validation.system_names]

        foundation_path = model_type = None
        type_map = training_set.type_map
        if 'finetune_from' in self.inputs:
            foundation = self.inputs.finetune_from
            foundation_path = f'{FOUNDATION_DIR}/{foundation.filename}'
            local_copy_list.append((foundation.uuid, foundation.filename, foundation_path))
            type_map = foundation.type_map
            model_type = foundation.base.attributes.get('model_type', None)

        settings = self.inputs.settings.get_dict() if 'settings' in self.inputs else {}
        parameters = deepmd.training_input(
            self.inputs.parameters.get_dict(), type_map, training_systems, validation_systems, model_type
        )
        if 'pair_table' in self.inputs:
            table = self.inputs.pair_table
            local_copy_list.append((table.uuid, table.filename, PAIR_TABLE))
            parameters['model']['use_srtab'] = PAIR_TABLE
        with folder.open(deepmd.TRAIN_INPUT, 'w') as handle:
            json.dump(parameters, handle, indent=2)

        branch = self.inputs.model_branch.value if 'model_branch' in self.inputs else None
        train_arguments = deepmd.train_arguments(
            foundation_path, branch, use_pretrain_script=bool(settings.get('use_pretrain_script'))
        )
        codes_info = [self._dp_step(train_arguments, self.inputs.metadata.options.output_filename)]
        if settings.get('freeze', True):
            codes_info.append(self._dp_step(deepmd.freeze_arguments(), FREEZE_LOG))
        options = compress_options(settings)
        if options is not None:
            codes_info.append(self._dp_step(deepmd.compress_arguments(options), COMPRESS_LOG))

        calcinfo = datastructures.CalcInfo()
        calcinfo.codes_info = codes_info
        calcinfo.codes_run_mode = datastructures.CodeRunMode.SERIAL
        calcinfo.local_copy_list = local_copy_list
        calcinfo.retrieve_list = [
            self.inputs.metadata.options.output_filename,
            FREEZE_LOG,
            COMPRESS_LOG,
            deepmd.LCURVE,
            deepmd.FROZEN_MODEL,
            deepmd.FROZEN_MODEL_PT2,
            deepmd.COMPRESSED_MODEL,
            deepmd.CHECKPOINT_GLOB,
        ]
        return calcinfo

    def _dp_step(self, arguments: list[str], log: str) -> datastructures.CodeInfo:
        """One ``dp`` command of the job, its standard output and error joined into ``log``."""
        step = datastructures.CodeInfo()
        step.code_uuid = self.inputs.code.uuid
        step.cmdline_params = arguments
        step.stdout_name = log
        step.join_files = True
        return step
