"""``pfd.label``: label frames (a dataset or structures) with a model's energies, forces and virials.

Exit codes:

===  ===============================  =================================================================================
301  ERROR_MISSING_OUTPUT             ``labelled/`` or ``label.json`` was not written (the script did not finish)
302  ERROR_SCRIPT_FAILED              the script raised an exception (traceback in the scheduler's standard error)
310  ERROR_OUTPUT_PARSING             ``label.json`` or the deepmd/npy files could not be read
320  ERROR_FRAME_COUNT_MISMATCH       the labelled dataset does not have as many frames as the input
400  ERROR_NON_FINITE_LABELS          the model returned NaN or infinite energies, forces or virials
===  ===============================  =================================================================================
"""

from __future__ import annotations

from aiida import orm
from aiida.engine.processes.calcjobs.calcjob import validate_calc_job

from ..data import LabeledDataset
from ..data.dataset import natural_key
from .script import ScriptCalculation, define_model_inputs, structure_dict, validate_model


class LabelCalculation(ScriptCalculation):
    """Label frames with a model's ASE calculator: energy, forces and (for 3D-periodic frames) virial.

    The frames are either the ``dataset`` (labelled or not; its labels are replaced) or the ``structures``, taken in
    natural order of their keys (``s2`` before ``s10``). The output ``dataset`` keeps the frames' order and each frame's
    atom order, and has the model's type map.
    """

    SCRIPT = 'label'
    RETRIEVE = ['labelled', 'label.json']

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['metadata']['options']['parser_name'].default = 'pfd.label'
        define_model_inputs(spec, help='The model (any `pfd.model` backend) that gives the labels.')
        spec.input('dataset', valid_type=LabeledDataset, required=False, help='Frames to label (labels are replaced).')
        spec.input_namespace(
            'structures',
            valid_type=orm.StructureData,
            dynamic=True,
            required=False,
            help='Structures to label, instead of `dataset`; frames follow the natural order of the keys.',
        )
        spec.inputs.validator = cls.validate_inputs
        spec.output(
            'dataset', valid_type=LabeledDataset, help='The frames with the energies, forces and virials of the model.'
        )
        spec.exit_code(
            320,
            'ERROR_FRAME_COUNT_MISMATCH',
            invalidates_cache=True,
            message='The labelled dataset has a different number of frames than the input: {message}',
        )
        spec.exit_code(
            400, 'ERROR_NON_FINITE_LABELS', invalidates_cache=True, message='The labels are not finite: {message}'
        )

    @staticmethod
    def validate_inputs(value, ctx) -> str | None:
        """Exactly one of ``dataset`` and ``structures``; a ``model_head`` that fits; all elements in the type map."""
        message = validate_calc_job(value, ctx)
        if message or 'model' not in ctx or 'dataset' not in ctx or 'structures' not in ctx:
            return message
        dataset, structures = value.get('dataset'), value.get('structures') or {}
        if dataset is not None and structures:
            return 'give either `dataset` or `structures`, not both.'
        if dataset is None and not structures:
            return 'give the frames to label: either `dataset` or `structures`.'
        if 'model' not in value:
            return None
        if dataset is not None:
            return validate_model(value['model'], value.get('model_head'), 'dataset', dataset.elements or [])
        elements = {name: structure.get_symbols_set() for name, structure in structures.items()}
        return validate_model(value['model'], value.get('model_head'), 'structures', elements)

    def sorted_structures(self) -> list[tuple[str, orm.StructureData]]:
        """The ``structures`` inputs as ``(key, node)`` in natural key order: the frame order."""
        structures = self.inputs.get('structures') or {}
        return sorted(structures.items(), key=lambda item: natural_key(item[0]))

    def script_parameters(self) -> dict:
        parameters = {'model': self.model_parameters(), 'type_map': self.inputs.model.type_map}
        if 'dataset' in self.inputs:
            parameters['dataset'] = self.dataset_path('dataset')
        else:
            parameters['structures'] = [
                {'name': name, **structure_dict(structure)} for name, structure in self.sorted_structures()
            ]
        return parameters
