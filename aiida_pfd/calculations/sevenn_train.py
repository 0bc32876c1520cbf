"""``pfd.sevenn.train``: fine-tune a SevenNet checkpoint (e.g. the shipped SevenNet-0) with ``sevenn train``.

The ``python`` code runs ``python -m sevenn.main.sevenn train input.yaml --log log.sevenn`` (sevenn's console script,
so ``aiida-pfd setup`` needs no extra code). The datasets are written as extended XYZ, the foundation is copied to
``foundation/``, and ``input.yaml`` is sevenn's own vocabulary (see :func:`aiida_pfd.backends.sevenn.finetune_input`).

Outputs: ``model`` is sevenn's ``checkpoint_best.pth`` (lowest validation ``TotalLoss``), or the last epoch's
checkpoint when there is no validation set; ``learning_curve`` holds ``lc.csv`` column by column; ``metrics`` the last
epoch's RMSEs with DeePMD-like names (``rmse_e_trn``, ``rmse_f_val``, ``rmse_s_trn``...) and units.

Exit codes:

===  ============================  =====================================================================================
301  ERROR_MISSING_LEARNING_CURVE  ``lc.csv`` was not written and neither the log nor the standard output shows an error
302  ERROR_TRAINING_FAILED         ``sevenn`` stopped with an error (its last message is in the exit message)
303  ERROR_MISSING_MODEL           neither ``checkpoint_best.pth`` nor the last epoch's checkpoint was retrieved
310  ERROR_INVALID_LEARNING_CURVE  ``lc.csv`` could not be parsed
311  ERROR_INVALID_MODEL           the checkpoint is not a readable SevenNet checkpoint
400  ERROR_NON_FINITE_LOSS         the training loss or errors became NaN or infinite (lower ``train.optim_param.lr``)
===  ============================  =====================================================================================
"""

from __future__ import annotations

from aiida import orm
from aiida.common import datastructures
from aiida.engine import CalcJob
from aiida.engine.processes.calcjobs.calcjob import validate_calc_job

from ..backends import sevenn
from ..data import LabeledDataset, ModelData

STDOUT = 'sevenn.out'
FOUNDATION_DIR = 'foundation'


def validate_inputs(inputs, ctx=None) -> str | None:
    """Check datasets, foundation and parameters together; return a message naming the port and the fix."""
    message = validate_calc_job(inputs, ctx) if ctx is not None else None
    if message:
        return message
    training_set = inputs.get('training_set')
    validation_set = inputs.get('validation_set')
    foundation = inputs.get('finetune_from')
    if training_set is None or foundation is None:
        return None
    if not training_set.is_labelled:
        return 'training_set: the dataset has no energies and forces; label it first (e.g. with `pfd.label`).'
    if validation_set is not None and not validation_set.is_labelled:
        return 'validation_set: the dataset has no energies and forces; label it first.'

    if foundation.model_backend != 'sevenn' or foundation.kind != 'checkpoint':
        return (
            f'finetune_from: needs a SevenNet checkpoint (.pth, e.g. `ModelData.from_shipped("sevennet-0")`), got a '
            f'{foundation.kind} {foundation.model_backend} model.'
        )
    if foundation.heads:
        return (
            f'finetune_from: multi-fidelity SevenNet checkpoints (modalities {", ".join(foundation.heads)}) are not '
            'supported; use a single-fidelity one such as `sevennet-0`.'
        )
    for port, dataset in (('training_set', training_set), ('validation_set', validation_set)):
        missing = foundation.missing_elements(dataset.elements) if dataset is not None else []
        if missing:
            return (
                f'{port}: elements {missing} are not in the element list of the foundation model '
                f'({", ".join(foundation.type_map)}); choose a foundation that covers them.'
            )

    parameters = inputs['parameters'].get_dict() if 'parameters' in inputs else {}
    return sevenn.check_parameters(parameters, foundation.base.attributes.get('model_config', {}), _has_virial(inputs))


def _has_virial(inputs) -> bool:
    datasets = [inputs['training_set'], *([inputs['validation_set']] if 'validation_set' in inputs else [])]
    return all(dataset.has_virial for dataset in datasets)


class SevennTrainCalculation(CalcJob):
    """Fine-tune a SevenNet checkpoint on a ``pfd.dataset`` with ``sevenn train``."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('metadata.options.withmpi', valid_type=bool, default=False)
        spec.input('metadata.options.output_filename', valid_type=str, default=STDOUT)
        spec.input('metadata.options.parser_name', valid_type=str, default='pfd.sevenn.train')
        spec.inputs['metadata']['options']['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        spec.input('training_set', valid_type=LabeledDataset, help='Labelled frames to fine-tune on.')
        spec.input(
            'validation_set',
            valid_type=LabeledDataset,
            required=False,
            help='Labelled frames to validate on; without it sevenn splits off `data.data_divide_ratio` (default 0.1) '
            'of the training frames, seeded by `train.random_seed`.',
        )
        spec.input(
            'finetune_from',
            valid_type=ModelData,
            help='The SevenNet checkpoint to fine-tune, e.g. `ModelData.from_shipped("sevennet-0")`.',
        )
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            required=False,
            help='sevenn input.yaml keys (`train`, `data`, `model` sections) merged over fine-tuning defaults: '
            'epoch 100, Huber loss (delta 0.01), adam lr 0.004, exponentiallr gamma 0.99, force weight 1, stress '
            'weight 0.01, batch size 4, `is_train_stress` when the datasets have virials. The `model` section is the '
            "foundation's; only `train_shift_scale` and `train_denominator` may change.",
        )
        spec.inputs.validator = validate_inputs

        spec.output(
            'model',
            valid_type=ModelData,
            help="The fine-tuned checkpoint: `checkpoint_best.pth` (lowest validation TotalLoss), or the last epoch's "
            'without a validation set.',
        )
        spec.output('learning_curve', valid_type=orm.ArrayData, help='lc.csv: one array per column.')
        spec.output(
            'metrics',
            valid_type=orm.Dict,
            help='Last lc.csv row with DeePMD-like keys (rmse_e_trn, rmse_f_val, ...), `units`, and `model_epoch`.',
        )
        spec.default_output_node = 'metrics'

        spec.exit_code(
            301,
            'ERROR_MISSING_LEARNING_CURVE',
            invalidates_cache=True,
            message='lc.csv was not written and the output shows no error.',
        )
        spec.exit_code(302, 'ERROR_TRAINING_FAILED', invalidates_cache=True, message='`sevenn train` failed: {message}')
        spec.exit_code(
            303,
            'ERROR_MISSING_MODEL',
            invalidates_cache=True,
            message='The fine-tuned checkpoint is missing: {message}',
        )
        spec.exit_code(
            310, 'ERROR_INVALID_LEARNING_CURVE', invalidates_cache=True, message='lc.csv could not be parsed: {message}'
        )
        spec.exit_code(
            311, 'ERROR_INVALID_MODEL', invalidates_cache=True, message='The checkpoint could not be read: {message}'
        )
        spec.exit_code(
            400,
            'ERROR_NON_FINITE_LOSS',
            invalidates_cache=True,
            message='The training loss became NaN or infinite at epoch {epoch}; lower `train.optim_param.lr`.',
        )

    def prepare_for_submission(self, folder):
        import yaml

        foundation = self.inputs.finetune_from
        foundation_path = f'{FOUNDATION_DIR}/{foundation.filename}'
        folder.get_subfolder('datasets', create=True)
        with folder.open(sevenn.TRAINING_FILE, 'w') as handle:
            sevenn.write_dataset(self.inputs.training_set, handle)
        validation_file = None
        if 'validation_set' in self.inputs:
            validation_file = sevenn.VALIDATION_FILE
            with folder.open(validation_file, 'w') as handle:
                sevenn.write_dataset(self.inputs.validation_set, handle)

        settings = sevenn.finetune_input(
            self.inputs.parameters.get_dict() if 'parameters' in self.inputs else {},
            foundation.base.attributes.get('model_config'),
            foundation_path,
            validation_file=validation_file,
            train_stress=_has_virial(self.inputs),
        )
        with folder.open(sevenn.TRAIN_INPUT, 'w') as handle:
            yaml.safe_dump(settings, handle, sort_keys=False)

        codeinfo = datastructures.CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = sevenn.train_arguments()
        codeinfo.stdout_name = self.inputs.metadata.options.output_filename
        codeinfo.join_files = True

        calcinfo = datastructures.CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = [(foundation.uuid, foundation.filename, foundation_path)]
        calcinfo.retrieve_list = [self.inputs.metadata.options.output_filename, sevenn.LOG, sevenn.LEARNING_CURVE]
        # Checkpoints go to the parser only: the chosen one is stored once, as the `model` output.
        calcinfo.retrieve_temporary_list = [
            sevenn.BEST_CHECKPOINT,
            sevenn.checkpoint_name(settings['train']['epoch']),
        ]
        return calcinfo
