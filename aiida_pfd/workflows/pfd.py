"""``pfd.pfd``: fine-tune a foundation model on DFT frames chosen by an explore → label → select loop.

Outline::

    setup → perturb → label_initial (DFT) → collect →
    if_(the foundation's family does not refit its energy zero): evaluate_foundation → align_foundation →
    finetune →
    while_(not converged and iteration < max_iterations):
        explore → select_candidates → label (DFT) → evaluate → check_convergence →
        if_(frames to add: not converged, not the last iteration): add_frames → finetune
    → final_evaluation → if_(distill given): distill (DistillWorkChain on the fine-tuned model) → results

Every DFT frame is its own one-frame ``pfd.dataset`` made by a calcfunction from its DFT run, and the training set is
merged from exactly the frames trained on, so the provenance graph leads from the model to the DFT runs behind it and
to no other.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction, if_, while_
from aiida.plugins import CalculationFactory

from ..backends import get_backend
from ..data import LabeledDataset, ModelData
from ..data.alignment import fit_energy_offsets, shift_model_energy
from ..data.operations import merge_datasets
from ..protocols import get_protocol
from ..selection import DIVERSITY_METHODS, classify_by_error, is_converged, perturb_structure, select_candidates
from .distill import DistillWorkChain, distill_preset, preset_inputs
from .exploration import AseMdCalculation, md_inputs, unknown_structures, validate_exploration
from .labelling import ADAPTORS

EvaluateCalculation = CalculationFactory('pfd.evaluate')

INIT_FROM = ('foundation', 'previous')


@calcfunction
def split_into_structures(dataset: LabeledDataset) -> dict:
    """One ``StructureData`` per frame of ``dataset`` (``frame_0000``, ...), to be labelled one by one."""
    return {f'frame_{index:04d}': orm.StructureData(ase=atoms) for index, atoms in enumerate(dataset.to_ase())}


@calcfunction
def assemble_history(iterations: orm.List, **metrics: orm.Dict) -> orm.Dict:
    """The loop's history: one entry per iteration (the evaluation metrics it used are linked as inputs)."""
    return orm.Dict({'iterations': iterations.get_list(), 'n_iterations': len(iterations.get_list())})


def validate_selection(value, _=None) -> str | None:
    selection = value.get_dict()
    if selection.get('diversity', 'random') not in DIVERSITY_METHODS:
        return f'selection.diversity: choose one of {DIVERSITY_METHODS}.'
    band = selection.get('error_band')
    if not (isinstance(band, (list, tuple)) and len(band) == 2 and 0 <= band[0] < band[1]):
        return 'selection.error_band: give [lower, upper] in eV/Å with 0 <= lower < upper.'
    if int(selection.get('max_frames', 0)) < 1:
        return 'selection.max_frames: give a positive number of frames per iteration.'
    return None


def validate_training(value, _=None) -> str | None:
    training = value.get_dict()
    if training.get('init_from', 'foundation') not in INIT_FROM:
        return f'training.init_from: choose one of {INIT_FROM}.'
    fraction = training.get('old_data_fraction', 1.0)
    if not 0.0 <= fraction <= 1.0:
        return 'training.old_data_fraction: give a fraction in [0, 1].'
    if not isinstance(training.get('parameters', {}), dict):
        return "training.parameters: give the training settings of the foundation model's family as a dictionary."
    return None


def validate_convergence(value, _=None) -> str | None:
    convergence = value.get_dict()
    if convergence.get('force_rmse') is None or convergence['force_rmse'] <= 0:
        return 'convergence.force_rmse: give the target force RMSE in eV/Å (> 0).'
    if int(convergence.get('max_iterations', 0)) < 1:
        return 'convergence.max_iterations: give at least 1.'
    return None


def validate_inputs(inputs, _=None) -> str | None:
    """Cross-checks: one DFT adaptor, the foundation covers the elements, the exploration names known structures."""
    given = [adaptor.namespace for adaptor in ADAPTORS if inputs.get(adaptor.namespace)]
    if len(given) != 1:
        names = ', '.join(f'`{adaptor.namespace}`' for adaptor in ADAPTORS)
        return f'give the inputs of exactly one DFT code ({names}); got {len(given)}.'

    structures = inputs.get('structures', {})
    foundation = inputs.get('foundation_model')
    if foundation is not None:
        elements = sorted({kind.symbol for structure in structures.values() for kind in structure.kinds})
        missing = foundation.missing_elements(elements)
        if missing:
            return f'foundation_model: its type map lacks {missing}; choose a foundation model that covers them.'
        backend = get_backend(foundation.model_backend)
        if backend.train_code not in inputs.get('codes', {}):
            return f'codes.{backend.train_code}: the {backend.name} foundation is fine-tuned with this code; give it.'
        branch = inputs.get('model_branch')
        if branch is not None and branch.value not in foundation.heads:
            return f'model_branch: `{branch.value}` is not a branch of the foundation ({foundation.heads}).'

    if inputs.get('distill') and 'dp' not in inputs.get('codes', {}):
        return 'codes.dp: distillation trains a DeePMD student; give the `dp` code.'
    unknown = unknown_structures(inputs.get('exploration'), structures)
    if unknown:
        return f'exploration: task group names unknown structures {unknown}.'
    return None


class PFDWorkChain(WorkChain):
    """Fine-tune a foundation model until its error on freshly DFT-labelled frames is below target."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, help='The input structures.')
        spec.input('foundation_model', valid_type=ModelData, help='The pre-trained model to fine-tune.')
        spec.input('model_branch', valid_type=orm.Str, required=False, help='Branch of a multi-task foundation.')
        spec.input_namespace('codes', valid_type=orm.AbstractCode, dynamic=True, help='`python`, and `dp` for DeePMD.')
        spec.input(
            'perturbation',
            valid_type=orm.Dict,
            help='Initial frames: `frames` per structure, `cell_fraction`, `atom_displacement` (Å), `supercell`, '
            '`seed`.',
        )
        for adaptor in ADAPTORS:
            adaptor.expose(spec)
        spec.input(
            'exploration',
            valid_type=orm.Dict,
            validator=validate_exploration,
            help='`stages`: per iteration (the last repeats) a list of task groups, each `pfd.md.ase` parameters '
            '(temperatures K, pressures bar, ensemble, nsteps, timestep fs, sample_every...) and `structures`.',
        )
        spec.input(
            'selection',
            valid_type=orm.Dict,
            validator=validate_selection,
            help='`max_frames` per iteration, `min_distance` (Å), `diversity` (random|entropy), `seed`, '
            '`error_band` [lower, upper] on the max-atom force error (eV/Å).',
        )
        spec.input(
            'training',
            valid_type=orm.Dict,
            validator=validate_training,
            help="`parameters` (the family's training settings), `init_from` (foundation|previous), "
            '`old_data_fraction` (with previous), `align_energy` (default true: for a family whose fine-tuning keeps '
            "the foundation's energy zero, shift it per element onto the initial DFT frames first).",
        )
        spec.input(
            'convergence',
            valid_type=orm.Dict,
            validator=validate_convergence,
            help='`force_rmse` (eV/Å), `energy_rmse` (eV/atom, optional), `max_iterations`.',
        )
        spec.input(
            'options',
            valid_type=orm.Dict,
            required=False,
            help='`metadata.options` per job kind: {"train": {...}, "md": {...}, "evaluate": {...}}.',
        )
        spec.expose_inputs(
            DistillWorkChain,
            namespace='distill',
            exclude=('teacher', 'teacher_head', 'structures', 'codes', 'reference_set'),
            namespace_options={
                'required': False,
                'populate_defaults': False,
                'help': 'Distil the fine-tuned model at the end (DistillWorkChain inputs; the teacher, structures and '
                "codes are this workchain's, the DFT test set is the reference).",
            },
        )
        spec.inputs.validator = validate_inputs

        spec.outline(
            cls.setup,
            cls.perturb,
            cls.label_initial,
            cls.collect,
            if_(cls.should_align_energy)(
                cls.evaluate_foundation,
                cls.align_foundation,
            ),
            cls.finetune,
            cls.inspect_finetune,
            while_(cls.should_iterate)(
                cls.explore,
                cls.select_candidates,
                cls.label,
                cls.evaluate,
                cls.check_convergence,
                if_(cls.should_refine)(
                    cls.add_frames,
                    cls.finetune,
                    cls.inspect_finetune,
                ),
            ),
            cls.final_evaluation,
            if_(cls.should_distill)(
                cls.distill,
            ),
            cls.results,
        )

        spec.output('model', valid_type=ModelData, required=False, help='The fine-tuned model for inference.')
        spec.output('checkpoint', valid_type=ModelData, required=False, help='The fine-tuned checkpoint.')
        spec.output(
            'aligned_foundation',
            valid_type=ModelData,
            required=False,
            help='The foundation with its energy zero shifted onto the DFT code (when aligned).',
        )
        spec.output('training_set', valid_type=LabeledDataset, required=False, help='All DFT frames trained on.')
        spec.output('test_set', valid_type=LabeledDataset, required=False, help='DFT frames never trained on.')
        spec.output('history', valid_type=orm.Dict, required=False, help='Per iteration: counts, RMSEs, decision.')
        spec.output('metrics', valid_type=orm.Dict, required=False, help='Final model vs the test set.')
        spec.expose_outputs(DistillWorkChain, namespace='distill', namespace_options={'required': False})

        spec.exit_code(400, 'ERROR_NOT_CONVERGED', message='Not converged after {iterations} iterations; outputs kept.')
        spec.exit_code(401, 'ERROR_DFT_FAILURES', message='Fewer than half of the DFT labels succeeded: {message}')
        spec.exit_code(402, 'ERROR_NO_CANDIDATES', message='The exploration gave no candidate frame: {message}')
        spec.exit_code(403, 'ERROR_TRAINING_FAILED', message='Fine-tuning failed: {message}')
        spec.exit_code(404, 'ERROR_EXPLORATION_FAILED', message='Every exploration job failed: {message}')
        spec.exit_code(405, 'ERROR_EVALUATION_FAILED', message='The model evaluation failed: {message}')
        spec.exit_code(406, 'ERROR_DISTILLATION_FAILED', message='The distillation failed: {message}')

    @classmethod
    def get_builder_from_protocol(
        cls,
        codes: dict,
        structures: dict,
        foundation_model: ModelData,
        protocol: str | None = None,
        overrides: dict | None = None,
        model_branch: str | None = None,
        dft_overrides: dict | None = None,
        distill: dict | None = None,
    ):
        """A builder from the presets of ``protocols/pfd.yaml`` (``fast``, ``balanced``, ``stringent``).

        :param codes: ``{'pw': ..., 'python': ..., 'dp': ...}`` (codes or their labels).
        :param structures: ``{name: StructureData}``.
        :param overrides: replaces top-level entries of the preset (``perturbation``, ``exploration``, ``selection``,
            ``training``, ``convergence``); ``training.parameters`` is the foundation family's settings.
        :param dft_overrides: aiida-quantumespresso overrides for the DFT labels (on top of the preset's DFT protocol).
        :param distill: distil the fine-tuned model at the end: ``{'protocol': ..., 'overrides': ..., 'student':
            'se_e2_a', 'options': ...}`` for ``protocols/distill.yaml`` (``{}``: the default preset); ``options`` are
            the distillation's ``metadata.options`` per job kind.
        """
        from aiida_quantumespresso.workflows.protocols.utils import recursive_merge

        from .labelling.quantumespresso import get_pw_builder

        codes = {key: orm.load_code(value) if isinstance(value, str) else value for key, value in codes.items()}
        preset = get_protocol('pfd', protocol)
        if overrides:
            preset = recursive_merge(preset, overrides)
        backend = foundation_model.model_backend
        training = dict(preset['training'])
        parameters = training.pop('parameters', {})
        training['parameters'] = parameters.get(backend, parameters) if backend in parameters else parameters

        first = next(iter(structures.values()))
        pw = get_pw_builder(codes['pw'], first, protocol=preset.get('dft_protocol'), overrides=dft_overrides)

        builder = cls.get_builder()
        builder.structures = structures
        builder.foundation_model = foundation_model
        if model_branch:
            builder.model_branch = orm.Str(model_branch)
        builder.codes = {key: code for key, code in codes.items() if key != 'pw'}
        builder.perturbation = orm.Dict(preset['perturbation'])
        builder.exploration = orm.Dict(preset['exploration'])
        builder.selection = orm.Dict(preset['selection'])
        builder.training = orm.Dict(training)
        builder.convergence = orm.Dict(preset['convergence'])
        dft = builder.dft
        dft.pw.code = pw.pw.code
        dft.pw.parameters = pw.pw.parameters
        dft.pw.pseudos = pw.pw.pseudos
        dft.pw.metadata = pw.pw.metadata
        dft.kpoints_distance = pw.kpoints_distance
        dft.kpoints_force_parity = pw.kpoints_force_parity
        dft.max_iterations = pw.max_iterations
        if distill is not None:
            settings = distill_preset(
                distill.get('protocol'), distill.get('overrides'), distill.get('student', 'se_e2_a')
            )
            for port, node in preset_inputs(settings).items():
                builder.distill[port] = node
            if distill.get('options'):
                builder.distill.options = orm.Dict(distill['options'])
        return builder

    # -- steps ----------------------------------------------------------------------------------------------------

    def setup(self):
        self.ctx.adaptor = next(adaptor for adaptor in ADAPTORS if self.inputs.get(adaptor.namespace))
        self.ctx.iteration = 0
        self.ctx.converged = False
        self.ctx.history = []
        self.ctx.training_frames = []  # one-frame datasets, in the order they were added
        self.ctx.test_frames = []
        self.ctx.metric_nodes = {}
        self.ctx.foundation = self.inputs.foundation_model
        self.ctx.model = None
        self.ctx.checkpoint = None
        self.ctx.training_set = None

    def perturb(self):
        """Random perturbations of each input structure: the frames of the first fine-tuning."""
        self.ctx.initial_structures = {}
        for name, structure in sorted(self.inputs.structures.items()):
            parameters = self.inputs.perturbation
            frames = perturb_structure(structure, parameters)
            for key, frame in split_into_structures(frames).items():
                self.ctx.initial_structures[f'{name}_{key}'] = frame
        self.report(
            f'perturbed {len(self.inputs.structures)} structure(s) into {len(self.ctx.initial_structures)} frames'
        )

    def label_initial(self):
        return self._submit_labels(self.ctx.initial_structures, prefix='dft_initial')

    def collect(self):
        frames, failures = self._collect_labels()
        if not frames or len(frames) < len(failures):
            return self._stop(
                self.exit_codes.ERROR_DFT_FAILURES,
                message=f'initial frames: {len(failures)} of '
                f'{len(frames) + len(failures)} failed ({", ".join(failures)})',
            )
        self.ctx.training_frames = frames
        self.ctx.training_set = merge_datasets(**self._frame_kwargs(frames))
        self.report(f'{len(frames)} initial DFT frames labelled, {len(failures)} failed')

    def should_align_energy(self):
        backend = get_backend(self.inputs.foundation_model.model_backend)
        return backend.needs_energy_alignment and self.inputs.training.get('align_energy', True)

    def evaluate_foundation(self):
        """Zero-shot errors of the foundation on the initial DFT frames."""
        node = self._submit_evaluation(self.ctx.training_set, 'evaluate_foundation', model=self.inputs.foundation_model)
        return ToContext(foundation_evaluation=node)

    def align_foundation(self):
        """Shift the foundation's per-element energy zero onto the DFT code's (least squares on the first frames)."""
        node = self.ctx.foundation_evaluation
        if not node.is_finished_ok:
            return self._stop(
                self.exit_codes.ERROR_EVALUATION_FAILED,
                message=f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}',
            )
        metrics = node.outputs.metrics
        self.ctx.metric_nodes['foundation'] = metrics
        alignment = fit_energy_offsets(node.outputs.errors, self.ctx.training_set)
        self.ctx.foundation = shift_model_energy(self.inputs.foundation_model, alignment)
        self.ctx.alignment = alignment
        offsets = ', '.join(f'{element} {value:+.4f}' for element, value in alignment['offsets'].items())
        self.report(
            f'foundation zero-shot on {metrics["n_frames"]} DFT frames: force RMSE {metrics["force_rmse"]:.4f} eV/Å, '
            f'energy RMSE {metrics["energy_rmse_per_atom"]:.4f} eV/atom; energy zero shifted by {offsets} eV/atom '
            f'(residual {alignment["residual_energy_rmse_per_atom"] * 1000:.2f} meV/atom)'
        )
        return None

    def finetune(self):
        backend = get_backend(self.inputs.foundation_model.model_backend)
        training = self.inputs.training.get_dict()
        start_from_previous = training.get('init_from', 'foundation') == 'previous' and self.ctx.checkpoint is not None
        if start_from_previous:
            foundation, branch = self.ctx.checkpoint, None
            training_set = self._previous_plus_new(training.get('old_data_fraction', 1.0))
        else:
            foundation = self.ctx.foundation
            branch = self.inputs.model_branch.value if 'model_branch' in self.inputs else None
            training_set = self.ctx.training_set
        inputs = backend.finetune_inputs(
            code=self.inputs.codes[backend.train_code],
            foundation=foundation,
            training_set=training_set,
            parameters=training.get('parameters', {}),
            model_branch=branch,
            options=self._options('train'),
        )
        inputs['metadata']['call_link_label'] = f'finetune_{self.ctx.iteration}'
        node = self.submit(CalculationFactory(backend.train_process), **inputs)
        origin = 'previous model' if start_from_previous else 'foundation'
        self.report(f'fine-tuning {node.process_label}<{node.pk}> from the {origin} on {training_set.n_frames} frames')
        return ToContext(train=node)

    def inspect_finetune(self):
        node = self.ctx.train
        if not node.is_finished_ok:
            return self._stop(
                self.exit_codes.ERROR_TRAINING_FAILED,
                message=f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}',
            )
        self.ctx.model = node.outputs.model
        self.ctx.checkpoint = node.outputs.checkpoint if 'checkpoint' in node.outputs else node.outputs.model
        self.ctx.trained_frames = len(self.ctx.training_frames)

    def should_iterate(self):
        return not self.ctx.converged and self.ctx.iteration < self.inputs.convergence['max_iterations']

    def explore(self):
        """MD with the current model, one ``pfd.md.ase`` job per task group of this iteration's stage."""
        self.ctx.iteration += 1
        self.ctx.entry = {'iteration': self.ctx.iteration}
        stages = self.inputs.exploration['stages']
        stage = stages[min(self.ctx.iteration, len(stages)) - 1]
        jobs = {}
        for index, group in enumerate(stage):
            inputs = md_inputs(
                group,
                self.inputs.structures,
                self.ctx.model,
                self.inputs.codes['python'],
                seed=self.ctx.iteration,
                label=f'explore_{self.ctx.iteration}_{index}',
                options=self._options('md'),
            )
            jobs[f'md_{index}'] = self.submit(AseMdCalculation, **inputs)
        self.report(f'iteration {self.ctx.iteration}: exploring with {len(jobs)} MD job(s)')
        return ToContext(**jobs)

    def select_candidates(self):
        md_jobs = [self.ctx[key] for key in sorted(self.ctx) if key.startswith('md_')]
        frames = {}
        for index, node in enumerate(md_jobs):
            if 'frames' in node.outputs:  # unstable trajectories (exit 400) keep the frames before the blow-up
                frames[f'md_{index}'] = node.outputs.frames
            else:
                self.report(f'{node.process_label}<{node.pk}> gave no frames: [{node.exit_status}] {node.exit_message}')
        for key in [key for key in self.ctx if key.startswith('md_')]:
            del self.ctx[key]
        if not frames:
            return self._stop(self.exit_codes.ERROR_EXPLORATION_FAILED, message=f'{len(md_jobs)} MD job(s) failed')

        candidates = merge_datasets(**frames) if len(frames) > 1 else next(iter(frames.values()))
        selection = {key: value for key, value in self.inputs.selection.get_dict().items() if key != 'error_band'}
        selection.setdefault('seed', 0)
        selection['seed'] += self.ctx.iteration
        outputs = select_candidates(candidates, orm.Dict(selection), training=self.ctx.training_set)
        report = outputs['report'].get_dict()
        self.ctx.entry.update(candidates=report['n_candidates'], unphysical_candidates=report['n_unphysical'])
        if 'selected' not in outputs:
            return self._stop(
                self.exit_codes.ERROR_NO_CANDIDATES,
                message=f'{report["n_candidates"]} frames explored, {report["n_unphysical"]} unphysical, none selected',
            )
        self.ctx.selected = split_into_structures(outputs['selected'])
        self.report(
            f'iteration {self.ctx.iteration}: {report["n_candidates"]} frames explored, '
            f'{report["n_selected"]} selected for DFT'
        )

    def label(self):
        return self._submit_labels(self.ctx.selected, prefix=f'dft_{self.ctx.iteration}')

    def evaluate(self):
        frames, failures = self._collect_labels()
        self.ctx.entry.update(dft_labelled=len(frames) + len(failures), dft_failed=len(failures))
        if not frames or len(frames) < len(failures):
            return self._stop(
                self.exit_codes.ERROR_DFT_FAILURES,
                message=f'iteration {self.ctx.iteration}: '
                f'{len(failures)} of {len(frames) + len(failures)} failed ({", ".join(failures)})',
            )
        self.ctx.fresh_frames = frames
        fresh = merge_datasets(**self._frame_kwargs(frames))
        node = self._submit_evaluation(fresh, f'evaluate_{self.ctx.iteration}')
        return ToContext(evaluation=node)

    def check_convergence(self):
        node = self.ctx.evaluation
        if not node.is_finished_ok:
            return self._stop(
                self.exit_codes.ERROR_EVALUATION_FAILED,
                message=f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}',
            )
        metrics = node.outputs.metrics.get_dict()
        self.ctx.metric_nodes[f'iteration_{self.ctx.iteration}'] = node.outputs.metrics
        converged, reason = is_converged(metrics, self.inputs.convergence.get_dict())
        self.ctx.converged = converged

        lower, upper = self.inputs.selection['error_band']
        report = classify_by_error(node.outputs.errors, orm.Dict({'lower': lower, 'upper': upper})).get_dict()
        fresh = self.ctx.fresh_frames
        last = self.ctx.iteration >= self.inputs.convergence['max_iterations']
        self.ctx.test_frames.extend(fresh[i] for i in report['accurate_indices'])
        if converged or last:
            # Nothing more is trained on: the current model is the final one, and all physical fresh frames test it.
            self.ctx.added, held_out = [], [fresh[i] for i in report['added_indices']]
            self.ctx.test_frames.extend(held_out)
        else:
            self.ctx.added, held_out = [fresh[i] for i in report['added_indices']], []
        if converged:
            verdict = 'converged'
        elif last:
            verdict = f'not converged after the last iteration; its {len(held_out)} frames test the final model'
        else:
            verdict = f'not converged, adding {len(self.ctx.added)} frames'
        self.ctx.entry.update(
            force_rmse=metrics['force_rmse'],
            energy_rmse_per_atom=metrics['energy_rmse_per_atom'],
            frames_added=len(self.ctx.added),
            frames_held_out=len(held_out),
            frames_accurate=len(report['accurate_indices']),
            frames_unphysical=len(report['unphysical_indices']),
            converged=converged,
            decision=verdict,
            reason=reason,
        )
        self.ctx.history.append(self.ctx.entry)
        self.report(f'iteration {self.ctx.iteration}: {reason}: {verdict}')

    def should_refine(self):
        """Fine-tune again unless converged or out of iterations (no evaluation would follow)."""
        return bool(self.ctx.added)

    def add_frames(self):
        self.ctx.training_frames = self.ctx.training_frames + self.ctx.added
        self.ctx.training_set = merge_datasets(**self._frame_kwargs(self.ctx.training_frames))

    def final_evaluation(self):
        """Evaluate the final model on every DFT frame it was never trained on."""
        if not self.ctx.test_frames or self.ctx.model is None:
            return None
        self.ctx.test_set = merge_datasets(**self._frame_kwargs(self.ctx.test_frames))
        return ToContext(final=self._submit_evaluation(self.ctx.test_set, 'evaluate_final'))

    def should_distill(self):
        return bool(self.inputs.get('distill')) and self.ctx.model is not None

    def distill(self):
        """Distil the fine-tuned model; its DFT test set (frames never trained on) is the reference."""
        inputs = AttributeDict(self.exposed_inputs(DistillWorkChain, namespace='distill'))
        inputs.teacher = self.ctx.model
        inputs.structures = dict(self.inputs.structures)
        inputs.codes = {key: self.inputs.codes[key] for key in ('python', 'dp')}
        if self.ctx.test_frames:
            inputs.reference_set = self.ctx.test_set
        inputs.metadata = {'call_link_label': 'distill'}
        node = self.submit(DistillWorkChain, **inputs)
        self.report(f'distilling the fine-tuned model: {node.process_label}<{node.pk}>')
        return ToContext(distillation=node)

    def results(self):
        self._attach_outputs()
        if 'final' in self.ctx and self.ctx.final.is_finished_ok:
            self.out('metrics', self.ctx.final.outputs.metrics)
            metrics = self.ctx.final.outputs.metrics
            self.report(
                f'final model on {self.ctx.test_set.n_frames} test frames: force RMSE '
                f'{metrics["force_rmse"]:.4f} eV/Å, energy RMSE {metrics["energy_rmse_per_atom"] * 1000:.2f} '
                'meV/atom'
            )
        if 'distillation' in self.ctx:
            node = self.ctx.distillation
            self.out_many(self.exposed_outputs(node, DistillWorkChain, namespace='distill'))
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_DISTILLATION_FAILED.format(
                    message=f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}'
                )
        if not self.ctx.converged:
            return self.exit_codes.ERROR_NOT_CONVERGED.format(iterations=self.ctx.iteration)
        return None

    # -- helpers --------------------------------------------------------------------------------------------------

    def _submit_labels(self, structures: dict, prefix: str):
        jobs = {}
        for index, name in enumerate(sorted(structures)):
            inputs = self.ctx.adaptor.get_inputs(self, structures[name], f'{prefix}_{index}')
            jobs[f'dft_{index:04d}'] = self.submit(self.ctx.adaptor.process_class, **inputs)
        self.report(f'submitted {len(jobs)} DFT calculation(s)')
        return ToContext(**jobs)

    def _collect_labels(self) -> tuple[list[LabeledDataset], list[str]]:
        frames, failures = [], []
        for key in sorted(key for key in self.ctx if key.startswith('dft_')):
            node = self.ctx[key]
            if node.is_finished_ok:
                frames.append(self.ctx.adaptor.to_dataset(node))
            else:
                failures.append(f'{node.process_label}<{node.pk}> [{node.exit_status}]')
                self.report(f'DFT {node.process_label}<{node.pk}> failed [{node.exit_status}], frame skipped')
            del self.ctx[key]
        return frames, failures

    def _submit_evaluation(self, reference: LabeledDataset, label: str, model: ModelData | None = None):
        inputs = {
            'code': self.inputs.codes['python'],
            'model': model or self.ctx.model,
            'reference': reference,
            'metadata': {'call_link_label': label, 'options': self._options('evaluate')},
        }
        return self.submit(EvaluateCalculation, **inputs)

    def _previous_plus_new(self, fraction: float) -> LabeledDataset:
        """New frames since the last fine-tuning plus a seeded ``fraction`` of the older ones."""
        old, new = (
            self.ctx.training_frames[: self.ctx.trained_frames],
            self.ctx.training_frames[self.ctx.trained_frames :],
        )
        keep = round(fraction * len(old))
        chosen = sorted(np.random.default_rng(self.ctx.iteration).choice(len(old), keep, replace=False)) if keep else []
        frames = [old[i] for i in chosen] + new
        return merge_datasets(**self._frame_kwargs(frames)) if frames else self.ctx.training_set

    @staticmethod
    def _frame_kwargs(frames: list[LabeledDataset]) -> dict:
        return {f'frame_{index:05d}': frame for index, frame in enumerate(frames)}

    def _options(self, kind: str) -> dict:
        return dict(self.inputs.options.get(kind, {})) if 'options' in self.inputs else {}

    def _attach_outputs(self):
        if self.ctx.model is not None:
            self.out('model', self.ctx.model)
            self.out('checkpoint', self.ctx.checkpoint)
        if self.ctx.foundation.pk != self.inputs.foundation_model.pk:
            self.out('aligned_foundation', self.ctx.foundation)
        if self.ctx.training_set is not None:
            self.out('training_set', self.ctx.training_set)
        if self.ctx.test_frames:
            if 'test_set' not in self.ctx:
                self.ctx.test_set = merge_datasets(**self._frame_kwargs(self.ctx.test_frames))
            self.out('test_set', self.ctx.test_set)
        if self.ctx.history or self.ctx.metric_nodes:
            self.out('history', assemble_history(orm.List(self.ctx.history), **self.ctx.metric_nodes))

    def _stop(self, exit_code, **kwargs):
        """Attach what exists so far and return ``exit_code``: nothing labelled is lost."""
        self._attach_outputs()
        return exit_code.format(**kwargs)
