"""``pfd.validate``: properties and per-category errors of several models side by side, against DFT where it is known.

Outline::

    run (per model: ``pfd.validate`` properties; with a ``reference``, a ``pfd.evaluate`` on it) → results (the
    ``table``: each property per model, the DFT value from the reference frames where they hold it, relative errors,
    and the student's deviation from the teacher, flagged beyond ``tolerance``; errors per reference category)
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction
from aiida.plugins import CalculationFactory

from ..data import LabeledDataset, ModelData
from ..reference import category_errors, frame_categories

ValidateCalculation = CalculationFactory('pfd.validate')
EvaluateCalculation = CalculationFactory('pfd.evaluate')

#: Scalar properties of the table, with units.
UNITS = {
    'a0': 'Å',
    'b0': 'GPa',
    'c11': 'GPa',
    'c12': 'GPa',
    'c44': 'GPa',
    'c44_unrelaxed': 'GPa',
    'vacancy_unrelaxed': 'eV',
    'vacancy_unrelaxed_large': 'eV',
    'vacancy_relaxed_large': 'eV',
    'rdf_first_peak': 'Å',
    'phonon_gamma': 'THz',
    'phonon_x': 'THz',
    'phonon_l': 'THz',
}


def relative(value, reference) -> float | None:
    """|value - reference| / |reference| (for lists, the largest difference over the largest reference value)."""
    if value is None or reference is None:
        return None
    if isinstance(value, list):
        scale = max(abs(v) for v in reference) or 1.0
        return max(abs(a - b) for a, b in zip(sorted(value), sorted(reference))) / scale
    return abs(value - reference) / abs(reference) if reference else None


@calcfunction
def reference_properties_of(reference: LabeledDataset, reference_length: orm.Float) -> orm.Dict:
    """DFT properties of the reference frames in the property categories
    (:func:`aiida_pfd.properties.reference_properties`)."""
    from ..properties import reference_properties

    return orm.Dict(reference_properties(reference.to_ase(), frame_categories(reference), reference_length.value))


@calcfunction
def validation_table(parameters: orm.Dict, **nodes: orm.Dict) -> orm.Dict:
    """The table of properties (``properties_<model>`` nodes, optional ``dft``) and category errors
    (``categories_<model>``); ``parameters``: ``teacher``, ``student``, ``tolerance``."""
    settings = parameters.get_dict()
    properties = {
        key[len('properties_') :]: node.get_dict() for key, node in nodes.items() if key.startswith('properties_')
    }
    categories = {
        key[len('categories_') :]: node.get_dict() for key, node in nodes.items() if key.startswith('categories_')
    }
    dft = nodes['dft'].get_dict() if 'dft' in nodes else {}
    teacher, student, tolerance = settings.get('teacher'), settings.get('student'), settings['tolerance']
    rows, flags = {}, []
    for name, unit in UNITS.items():
        values = {model: result.get(name) for model, result in properties.items() if name in result}
        if not values:
            continue
        row = {'unit': unit, 'models': values, 'dft': dft.get(name)}
        row['relative_error'] = {model: relative(value, dft.get(name)) for model, value in values.items()}
        if teacher in values and student in values:
            deviation = relative(values[student], values[teacher])
            row['student_vs_teacher'] = deviation
            if deviation is not None and deviation > tolerance:
                flags.append(
                    f'{name}: the student deviates {deviation:.1%} from the teacher (tolerance {tolerance:.0%})'
                )
        rows[name] = row
    return orm.Dict({'properties': rows, 'categories': categories, 'flags': flags, 'tolerance': tolerance})


class ValidationWorkChain(WorkChain):
    """Compute the properties of a cubic crystal with each model, and their errors per category on DFT frames."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('models', valid_type=ModelData, dynamic=True, help='The models, by name.')
        spec.input('structure', valid_type=orm.StructureData, help='The cubic conventional cell of the crystal.')
        spec.input('code', valid_type=orm.AbstractCode, help='The `python` code (aiida-pfd installed).')
        spec.input('parameters', valid_type=orm.Dict, required=False, help='`pfd.validate` parameters.')
        spec.input(
            'reference',
            valid_type=LabeledDataset,
            required=False,
            help='DFT frames with `frame_categories` (aiida_pfd.reference.load_reference): every model is scored '
            'per category, and the frames of the property categories give the DFT column.',
        )
        spec.input('teacher', valid_type=orm.Str, required=False, help='The name in `models` of the teacher.')
        spec.input('student', valid_type=orm.Str, required=False, help='The name in `models` of the student.')
        spec.input(
            'tolerance',
            valid_type=orm.Float,
            default=lambda: orm.Float(0.1),
            help='Flag a property where the student deviates from the teacher by more than this (relative).',
        )
        spec.input('options', valid_type=orm.Dict, required=False, help='`metadata.options` of every job.')
        spec.inputs.validator = cls.validate_inputs
        spec.outline(cls.run_models, cls.results)
        spec.output('table', valid_type=orm.Dict, help='Properties per model beside DFT, category errors, flags.')
        spec.output_namespace('properties', valid_type=orm.Dict, dynamic=True, help="Each model's properties.")
        spec.output_namespace('categories', valid_type=orm.Dict, dynamic=True, help="Each model's category errors.")
        spec.exit_code(400, 'ERROR_JOB_FAILED', message='A property or evaluation job failed: {message}')

    @staticmethod
    def validate_inputs(inputs, _=None) -> str | None:
        models = inputs.get('models', {})
        if not models:
            return 'models: give at least one model.'
        for port in ('teacher', 'student'):
            if port in inputs and inputs[port].value not in models:
                return f'{port}: `{inputs[port].value}` is not one of `models` ({", ".join(sorted(models))}).'
        reference = inputs.get('reference')
        if reference is not None:
            try:
                frame_categories(reference)
            except ValueError as exception:
                return f'reference: {exception}'
        return None

    def run_models(self):
        options = self.inputs.options.get_dict() if 'options' in self.inputs else {}
        jobs = {}
        for name, model in self.inputs.models.items():
            inputs = {
                'code': self.inputs.code,
                'model': model,
                'structure': self.inputs.structure,
                'metadata': {'call_link_label': f'properties_{name}', 'options': dict(options)},
            }
            if 'parameters' in self.inputs:
                inputs['parameters'] = self.inputs.parameters
            jobs[f'properties__{name}'] = self.submit(ValidateCalculation, **inputs)
            if 'reference' in self.inputs:
                evaluation = {
                    'code': self.inputs.code,
                    'model': model,
                    'reference': self.inputs.reference,
                    'metadata': {'call_link_label': f'reference_{name}', 'options': dict(options)},
                }
                jobs[f'evaluate__{name}'] = self.submit(EvaluateCalculation, **evaluation)
        self.report(f'validating {", ".join(self.inputs.models)}: {len(jobs)} job(s)')
        return ToContext(**jobs)

    def results(self):
        jobs = [self.ctx[key] for key in sorted(self.ctx) if '__' in key]
        failed = [
            f'{job.process_label}<{job.pk}> [{job.exit_status}] {job.exit_message}'
            for job in jobs
            if not job.is_finished_ok
        ]
        nodes = {}
        for name in self.inputs.models:
            job = self.ctx[f'properties__{name}']
            if job.is_finished_ok:
                nodes[f'properties_{name}'] = job.outputs.properties
                self.out(f'properties.{name}', job.outputs.properties)
            evaluation = self.ctx.get(f'evaluate__{name}')
            if evaluation is not None and evaluation.is_finished_ok:
                errors = category_errors(evaluation.outputs.errors, self.inputs.reference)
                nodes[f'categories_{name}'] = errors
                self.out(f'categories.{name}', errors)
        if 'reference' in self.inputs:
            nodes['dft'] = reference_properties_of(self.inputs.reference, orm.Float(self.inputs.structure.cell[0][0]))
        settings = {'tolerance': self.inputs.tolerance.value}
        for port in ('teacher', 'student'):
            if port in self.inputs:
                settings[port] = self.inputs[port].value
        table = validation_table(orm.Dict(settings), **nodes)
        self.out('table', table)
        for flag in table['flags']:
            self.report(f'flag: {flag}')
        if failed:
            return self.exit_codes.ERROR_JOB_FAILED.format(message='; '.join(failed))
        return None
