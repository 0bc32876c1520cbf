"""Base class of the CalcJobs that run one of ``aiida_pfd.scripts`` with the ``python`` code.

The job folder holds ``input.json`` (the script's parameters), the model under ``model/`` and datasets as deepmd/npy
folders under ``datasets/<name>/``. The command line is ``python -m aiida_pfd.scripts.<script> input.json``; the script
writes plain files that the parser reads, and ``error.json`` (``{"exit_code": label, "message": ...}``) when it stops
on a condition the parser turns into an exit code. The Python of the code must have aiida-pfd installed.
"""

from __future__ import annotations

import json
import typing as t

from aiida import orm
from aiida.common import datastructures
from aiida.engine import CalcJob

from ..data import LabeledDataset, ModelData

MODEL_DIR = 'model'
DATASETS_DIR = 'datasets'
INPUT_FILE = 'input.json'
ERROR_FILE = 'error.json'
STDOUT = 'script.out'


class ScriptCalculation(CalcJob):
    """Run ``python -m aiida_pfd.scripts.<SCRIPT> input.json`` in the job folder."""

    SCRIPT: t.ClassVar[str] = ''
    #: Files and folders the parser needs, besides the standard output and ``error.json``.
    RETRIEVE: t.ClassVar[list[str]] = []

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('metadata.options.withmpi', valid_type=bool, default=False)
        spec.input('metadata.options.output_filename', valid_type=str, default=STDOUT)
        spec.inputs['metadata']['options']['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        spec.input(
            'settings',
            valid_type=orm.Dict,
            required=False,
            help='Extra job settings: `cmdline` (list of extra arguments for the script).',
        )
        spec.exit_code(
            301, 'ERROR_MISSING_OUTPUT', invalidates_cache=True, message='The script wrote no output: {message}'
        )
        spec.exit_code(302, 'ERROR_SCRIPT_FAILED', invalidates_cache=True, message='The script failed: {message}')
        spec.exit_code(310, 'ERROR_OUTPUT_PARSING', message='The output files could not be parsed: {message}')

    def script_parameters(self) -> dict:
        """The content of ``input.json``."""
        return {}

    def prepare_for_submission(self, folder):
        local_copy_list = []
        for name, node in self.iter_input_nodes():
            if isinstance(node, ModelData):
                local_copy_list.append((node.uuid, node.filename, f'{MODEL_DIR}/{name}/{node.filename}'))
            elif isinstance(node, LabeledDataset):
                local_copy_list.append((node.uuid, 'systems', f'{DATASETS_DIR}/{name}'))

        parameters = {'script': self.SCRIPT, **self.script_parameters()}
        with folder.open(INPUT_FILE, 'w') as handle:
            json.dump(parameters, handle, indent=2)

        codeinfo = datastructures.CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = ['-m', f'aiida_pfd.scripts.{self.SCRIPT}', INPUT_FILE]
        codeinfo.stdout_name = self.inputs.metadata.options.output_filename
        codeinfo.withmpi = self.inputs.metadata.options.withmpi

        calcinfo = datastructures.CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = local_copy_list
        calcinfo.retrieve_list = [self.inputs.metadata.options.output_filename, ERROR_FILE, *self.RETRIEVE]
        return calcinfo

    def iter_input_nodes(self) -> t.Iterator[tuple[str, orm.Node]]:
        """Yield ``(name, node)`` for each model and dataset input, nested namespaces flattened with ``__``."""

        def walk(namespace, prefix=''):
            for key, value in namespace.items():
                if isinstance(value, (ModelData, LabeledDataset)):
                    yield f'{prefix}{key}', value
                elif isinstance(value, t.Mapping) and key != 'metadata':
                    yield from walk(value, f'{prefix}{key}__')

        yield from walk(self.inputs)

    @staticmethod
    def model_path(name: str, model: ModelData) -> str:
        """Path of input model ``name`` relative to the job folder."""
        return f'{MODEL_DIR}/{name}/{model.filename}'

    @staticmethod
    def dataset_path(name: str) -> str:
        """Path of input dataset ``name`` (a folder of deepmd/npy systems) relative to the job folder."""
        return f'{DATASETS_DIR}/{name}'
