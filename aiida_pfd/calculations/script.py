"""Base class of the CalcJobs that run one of ``aiida_pfd.scripts`` with the ``python`` code.

The job folder holds ``input.json`` (the script's parameters), the model under ``model/`` and datasets as deepmd/npy
folders under ``datasets/<name>/``. The command line is ``python -m aiida_pfd.scripts.<script> input.json``; the script
writes plain files that the parser reads, and ``error.json`` (``{"exit_code": label, "message": ...}``) when it stops
on a condition the parser turns into an exit code. The Python of the code must have aiida-pfd installed.

:func:`define_model_inputs`, :func:`validate_model` and :meth:`ScriptCalculation.model_parameters` give the ``model``
and ``model_head`` ports, their validation and their ``input.json`` entry to the CalcJobs whose script uses a model.
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


def define_model_inputs(spec, help: str) -> None:
    """The ``model`` (described by ``help``) and ``model_head`` input ports, checked by :func:`validate_model`."""
    spec.input('model', valid_type=ModelData, help=help)
    spec.input(
        'model_head',
        valid_type=orm.Str,
        required=False,
        help='Head (branch) of a multi-task model; required when the model has heads.',
    )


def validate_model(
    model: ModelData,
    head: orm.Str | None,
    port: str,
    elements: t.Iterable[str] | t.Mapping[str, t.Iterable[str]],
) -> str | None:
    """Check ``model_head`` against the model's heads and that the model's type map covers the elements of ``port``.

    A model with heads (a multi-task checkpoint; a frozen model has none) needs ``model_head``, a model without heads
    takes none. ``elements`` are those of ``port``, or ``{name: elements}`` for a namespace of structures, so that the
    message says which structures hold a missing element.
    """
    heads = model.heads or []
    if head is None:
        if heads:
            return f'`model` is a multi-task checkpoint: set `model_head` to one of its heads {heads}.'
    elif not heads:
        return f'`model_head` is `{head.value}` but `model` has no heads: leave `model_head` out.'
    elif head.value not in heads:
        return f'`model_head` `{head.value}` is not a head of `model`: choose one of {heads}.'

    if isinstance(elements, t.Mapping):
        where: dict[str, list[str]] = {}
        for name, symbols in elements.items():
            for element in model.missing_elements(sorted(set(symbols))):
                where.setdefault(element, []).append(name)
        missing = '; '.join(f'{element} (in {", ".join(names)})' for element, names in sorted(where.items()))
        remove = 'structures'
    else:
        missing, remove = sorted(set(model.missing_elements(elements))), 'frames'
    if missing:
        return (
            f'the type map of `model` {model.type_map} lacks the elements {missing} present in `{port}`: '
            f'use a model that covers them, or remove those {remove}.'
        )
    return None


def structure_dict(structure: orm.StructureData) -> dict:
    """What a script needs to rebuild ``structure`` as ASE ``Atoms`` (:func:`aiida_pfd.scripts.common.build_atoms`)."""
    atoms = structure.get_ase()
    return {
        'symbols': atoms.get_chemical_symbols(),
        'positions': atoms.positions.tolist(),
        'cell': atoms.cell.array.tolist(),
        'pbc': atoms.pbc.tolist(),
        'masses': atoms.get_masses().tolist(),
    }


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
        spec.exit_code(
            310,
            'ERROR_OUTPUT_PARSING',
            invalidates_cache=True,
            message='The output files could not be parsed: {message}',
        )

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

    def model_parameters(self) -> dict:
        """The ``model`` entry of ``input.json`` (read by :func:`aiida_pfd.scripts.common.get_calculator`)."""
        model = self.inputs.model
        head = self.inputs.get('model_head')
        return {
            'backend': model.model_backend,
            'path': self.model_path('model', model),
            'head': head.value if head is not None else None,
        }

    @staticmethod
    def dataset_path(name: str) -> str:
        """Path of input dataset ``name`` (a folder of deepmd/npy systems) relative to the job folder."""
        return f'{DATASETS_DIR}/{name}'
