"""``pfd.evaluate``: errors of a model's energies, forces and virials against a labelled reference dataset.

Exit codes:

===  ===============================  =================================================================================
301  ERROR_MISSING_OUTPUT             ``errors.npz`` or ``metrics.json`` was not written
302  ERROR_SCRIPT_FAILED              the script raised an exception (traceback in the scheduler's standard error)
310  ERROR_OUTPUT_PARSING             ``errors.npz`` or ``metrics.json`` could not be read, or lacks an entry
320  ERROR_FRAME_COUNT_MISMATCH       the per-frame arrays do not have one entry per reference frame
400  ERROR_NON_FINITE_PREDICTIONS     the model returned NaN or infinite energies, forces or virials
401  ERROR_NON_FINITE_REFERENCE       the reference dataset holds NaN or infinite labels
===  ===============================  =================================================================================
"""

from __future__ import annotations

from aiida import orm
from aiida.engine.processes.calcjobs.calcjob import validate_calc_job

from ..data import LabeledDataset
from .script import ScriptCalculation, define_model_inputs, validate_model


class EvaluateCalculation(ScriptCalculation):
    """Predict every frame of ``reference`` with ``model`` and compare with the reference labels.

    Outputs ``errors`` (per-frame arrays, in the reference's frame order: system by system, as
    :meth:`LabeledDataset.to_ase <aiida_pfd.data.dataset.LabeledDataset.to_ase>`) and ``metrics`` (RMSE/MAE with a
    ``units`` sub-dictionary). Errors are predicted minus reference.
    """

    SCRIPT = 'evaluate'
    RETRIEVE = ['errors.npz', 'metrics.json']

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['metadata']['options']['parser_name'].default = 'pfd.evaluate'
        define_model_inputs(spec, help='The model (any `pfd.model` backend) whose predictions are evaluated.')
        spec.input(
            'reference',
            valid_type=LabeledDataset,
            validator=cls.validate_reference,
            help='Labelled frames (energies and forces; virials optional) to compare the model with.',
        )
        spec.inputs.validator = cls.validate_inputs
        spec.output(
            'errors',
            valid_type=orm.ArrayData,
            help='Per-frame arrays: natoms, energy_per_atom_{reference,predicted,error} (eV/atom), max_force_error and '
            'force_rmse (eV/Å), virial_per_atom_error (eV/atom, shape (n_frames, 9); only with reference virials).',
        )
        spec.output(
            'metrics',
            valid_type=orm.Dict,
            help='energy_{rmse,mae}_per_atom, force_{rmse,mae}, max_force_error, virial_{rmse,mae}_per_atom (with '
            'reference virials), n_frames, n_atoms, and `units`.',
        )
        spec.exit_code(
            320,
            'ERROR_FRAME_COUNT_MISMATCH',
            invalidates_cache=True,
            message='The per-frame errors do not match the reference frames: {message}',
        )
        spec.exit_code(
            400,
            'ERROR_NON_FINITE_PREDICTIONS',
            invalidates_cache=True,
            message='The predictions are not finite: {message}',
        )
        spec.exit_code(
            401,
            'ERROR_NON_FINITE_REFERENCE',
            invalidates_cache=True,
            message='The reference labels are not finite: {message}',
        )

    @staticmethod
    def validate_reference(value, _) -> str | None:
        """The reference must carry energies and forces."""
        if value is not None and not value.is_labelled:
            return '`reference` is not labelled (it has no energies and forces): label it first, e.g. with `pfd.label`.'
        return None

    @staticmethod
    def validate_inputs(value, ctx) -> str | None:
        """A ``model_head`` that fits the model, and a model type map with every element of ``reference``."""
        message = validate_calc_job(value, ctx)
        if message or 'model' not in ctx or 'reference' not in ctx or 'model' not in value or 'reference' not in value:
            return message
        return validate_model(value['model'], value.get('model_head'), 'reference', value['reference'].elements or [])

    def script_parameters(self) -> dict:
        return {'model': self.model_parameters(), 'reference': self.dataset_path('reference')}
