"""``pfd.pfd``: fine-tune a foundation model on DFT frames chosen by an explore → label → select loop.

Outline::

    setup → perturb → label_initial (DFT) → collect (hold out a seeded share) →
    if_(training.align_energy; by default where fine-tuning keeps the foundation's energy zero): evaluate_foundation →
    align_foundation →
    if_(replay given): explore_replay → collect_replay (MD with the aligned foundation, its frames for replay) →
    finetune (the DFT frames trained on, plus a seeded sample of replay frames) →
    while_(not converged and iteration < max_iterations):
        explore → select_candidates → label (DFT) → evaluate → check_convergence (hold out a seeded share, judge the
        rest, assign roles) →
        if_(frames to add: not converged; after the last iteration too): add_frames → finetune
    → final_evaluation (final model, foundation zero-shot and aligned foundation on the held-out frames) →
    inspect_final_evaluation → if_(distill given): distill (DistillWorkChain on the fine-tuned model, the held-out
    frames as its reference) → results

Every DFT frame is its own one-frame ``pfd.dataset`` made by a calcfunction from its DFT run, and the training set is
merged from exactly the frames trained on, so the provenance graph leads from the model to the DFT runs behind it and
to no other. Each frame's role (see :mod:`aiida_pfd.ledger`) is decided by a calcfunction; the output ``dft_frames``
holds every DFT frame with its role and iteration, on every exit code. Every random choice derives from ``seed``.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction, if_, while_
from aiida.plugins import CalculationFactory, WorkflowFactory

from ..backends import get_backend
from ..caching import invalidate_failed
from ..data import LabeledDataset, ModelData
from ..data.alignment import fit_energy_offsets, shift_model_energy
from ..data.operations import merge_datasets, subset_dataset
from ..ledger import assess_iteration, assign_initial_roles, build_ledger
from ..protocols import get_protocol
from ..seeds import derive_seed, sample_indices
from ..selection import DIVERSITY_METHODS, perturb_structure, select_candidates
from ..validation import check_option_kinds, check_structures, unknown_keys
from .distill import DistillWorkChain, assemble_metrics, distill_preset, preset_inputs
from .exploration import (
    explored_frames,
    merged_frames,
    submit_task_groups,
    unknown_structures,
    validate_exploration,
)
from .labelling import ADAPTORS, get_adaptor
from .training import DEFAULT_LEARNING_RATE_FACTOR, check_learning_rate_factor

EvaluateCalculation = CalculationFactory('pfd.evaluate')

INIT_FROM = ('foundation', 'previous')

#: The keys of the Dict inputs (every key the workchain, the presets of protocols/pfd.yaml and the calcfunctions read).
PERTURBATION_KEYS = ('frames', 'cell_fraction', 'atom_displacement', 'supercell')
SELECTION_KEYS = ('max_frames', 'min_distance', 'diversity', 'error_band', 'cutoff', 'bandwidth')
TRAINING_KEYS = ('parameters', 'init_from', 'old_data_fraction', 'align_energy', 'divergence_learning_rate_factor')
CONVERGENCE_KEYS = ('force_rmse', 'energy_rmse', 'max_iterations')
OPTION_KINDS = ('train', 'md', 'evaluate')


@calcfunction
def split_into_structures(dataset: LabeledDataset) -> dict:
    """One ``StructureData`` per frame of ``dataset`` (``frame_0000``, ...), to be labelled one by one."""
    return {f'frame_{index:04d}': orm.StructureData(ase=atoms) for index, atoms in enumerate(dataset.to_ase())}


@calcfunction
def assemble_history(iterations: orm.List, run: orm.Dict, **nodes: orm.Dict) -> orm.Dict:
    """The loop's history: one entry per iteration, and the run's seeds and initial frames (the evaluation metrics and
    role assignments it used are linked as inputs)."""
    return orm.Dict({'iterations': iterations.get_list(), 'n_iterations': len(iterations.get_list()), **run.get_dict()})


def validate_structures(value, _=None) -> str | None:
    return check_structures('structures', value)


def validate_perturbation(value, _=None) -> str | None:
    if 'seed' in value.get_dict():
        return 'perturbation.seed: every seed derives from the `seed` input; set that instead.'
    problem = unknown_keys('perturbation', value.get_dict(), PERTURBATION_KEYS)
    if problem:
        return problem
    if int(value.get('frames', 5)) < 1:
        return 'perturbation.frames: give at least 1 frame per structure.'
    return None


def validate_test_fraction(value, _=None) -> str | None:
    if not 0.0 < value.value < 1.0:
        return 'test_fraction: give the held-out share of each batch of DFT frames, strictly between 0 and 1.'
    return None


def validate_seed(value, _=None) -> str | None:
    if value.value < 0:
        return 'seed: give a non-negative integer.'
    return None


def validate_selection(value, _=None) -> str | None:
    selection = value.get_dict()
    if 'seed' in selection:
        return 'selection.seed: every seed derives from the `seed` input; set that instead.'
    problem = unknown_keys('selection', selection, SELECTION_KEYS)
    if problem:
        return problem
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
    problem = unknown_keys('training', training, TRAINING_KEYS)
    if problem:
        return problem
    if training.get('init_from', 'foundation') not in INIT_FROM:
        return f'training.init_from: choose one of {INIT_FROM}.'
    fraction = training.get('old_data_fraction', 1.0)
    if not 0.0 <= fraction <= 1.0:
        return 'training.old_data_fraction: give a fraction in [0, 1].'
    if not isinstance(training.get('align_energy', False), bool):
        return 'training.align_energy: give true or false.'
    problem = check_learning_rate_factor(training.get('divergence_learning_rate_factor', DEFAULT_LEARNING_RATE_FACTOR))
    if problem:
        return f'training.divergence_learning_rate_factor: {problem}'
    if not isinstance(training.get('parameters', {}), dict):
        return "training.parameters: give the training settings of the foundation model's family as a dictionary."
    return None


def validate_replay(value, _=None) -> str | None:
    replay = value.get_dict()
    hint = '(`exploration`: stages of task groups; `ratio`: replay frames per DFT frame.)'
    problem = unknown_keys('replay', replay, ('exploration', 'ratio'), hint=hint)
    if problem:
        return problem
    if 'exploration' not in replay:
        return 'replay: give `exploration`, the task groups the aligned foundation runs to label the replay frames.'
    problem = validate_exploration(orm.Dict(replay['exploration']))
    if problem:
        return f'replay.{problem}'
    ratio = replay.get('ratio', 1.0)
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or ratio <= 0:
        return 'replay.ratio: give the number of replay frames per DFT frame trained on (> 0), e.g. 1.0.'
    return None


def validate_convergence(value, _=None) -> str | None:
    convergence = value.get_dict()
    problem = unknown_keys('convergence', convergence, CONVERGENCE_KEYS)
    if problem:
        return problem
    if convergence.get('force_rmse') is None or convergence['force_rmse'] <= 0:
        return 'convergence.force_rmse: give the target force RMSE in eV/Å (> 0).'
    if convergence.get('energy_rmse') is not None and convergence['energy_rmse'] <= 0:
        return 'convergence.energy_rmse: give the target energy RMSE in eV/atom (> 0), or leave it out.'
    if int(convergence.get('max_iterations', 0)) < 1:
        return 'convergence.max_iterations: give at least 1.'
    return None


def validate_inputs(inputs, _=None) -> str | None:
    """Cross-checks: one DFT adaptor, the foundation covers the elements, the exploration names known structures."""
    given = [adaptor for adaptor in ADAPTORS if inputs.get(adaptor.namespace)]
    if len(given) != 1:
        names = ', '.join(f'`{adaptor.namespace}`' for adaptor in ADAPTORS)
        return f'give the inputs of exactly one DFT code ({names}); got {len(given)}.'
    problem = check_option_kinds(inputs.get('options'), OPTION_KINDS)
    if problem:
        return problem

    structures = inputs.get('structures', {})
    perturbation = inputs.get('perturbation')
    if perturbation is not None and len(structures) * int(perturbation.get('frames', 5)) < 2:
        return 'perturbation.frames: give at least 2 initial frames in all, so that one can be held out as a test.'
    foundation = inputs.get('foundation_model')
    training = inputs['training'].get_dict() if 'training' in inputs else {}
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
        if aligns_energy(foundation, training) and (
            refusal := backend.energy_shift_refusal(foundation.kind, foundation.heads)
        ):
            return f'training.align_energy: {refusal} Set it to false for this foundation.'

    problem = given[0].check_structures(inputs[given[0].namespace], structures)
    if problem:
        return problem
    if inputs.get('distill') and 'dp' not in inputs.get('codes', {}):
        return 'codes.dp: distillation trains a DeePMD student; give the `dp` code.'
    unknown = unknown_structures(inputs.get('exploration'), structures)
    if unknown:
        return f'exploration: task group names unknown structures {unknown}.'
    unknown = unknown_structures(inputs.get('distill', {}).get('exploration'), structures)
    if unknown:
        return f'distill.exploration: task group names unknown structures {unknown}.'
    replay = inputs.get('replay')
    if replay is not None:
        unknown = unknown_structures(orm.Dict(replay['exploration']), structures)
        if unknown:
            return f'replay.exploration: task group names unknown structures {unknown}.'
        if foundation is not None and not aligns_energy(foundation, training):
            return (
                "replay: the replay frames carry the foundation's energies, which are on the DFT scale only once its "
                'energy zero is aligned: set `training.align_energy` to true (SevenNet: the default), or leave '
                '`replay` out.'
            )
    return None


def aligns_energy(foundation, training: dict) -> bool:
    """Whether the foundation's energy zero is shifted onto the initial DFT frames: ``training.align_energy``, by
    default for the families whose fine-tuning keeps the foundation's zero (SevenNet)."""
    return bool(training.get('align_energy', get_backend(foundation.model_backend).needs_energy_alignment))


class PFDWorkChain(WorkChain):
    """Fine-tune a foundation model until its error on freshly DFT-labelled frames is below target."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace(
            'structures',
            valid_type=orm.StructureData,
            dynamic=True,
            validator=validate_structures,
            help='The input structures.',
        )
        spec.input('foundation_model', valid_type=ModelData, help='The pre-trained model to fine-tune.')
        spec.input('model_branch', valid_type=orm.Str, required=False, help='Branch of a multi-task foundation.')
        spec.input_namespace('codes', valid_type=orm.AbstractCode, dynamic=True, help='`python`, and `dp` for DeePMD.')
        spec.input(
            'perturbation',
            valid_type=orm.Dict,
            validator=validate_perturbation,
            help='Initial frames: `frames` per structure, `cell_fraction`, `atom_displacement` (Å), `supercell`.',
        )
        spec.input(
            'seed',
            valid_type=orm.Int,
            default=lambda: orm.Int(0),
            validator=validate_seed,
            help='Every random choice derives from it: perturbations, MD task groups, selections, held-out frames, '
            'training seeds, the distillation (recorded in `history`).',
        )
        spec.input(
            'test_fraction',
            valid_type=orm.Float,
            default=lambda: orm.Float(0.3),
            validator=validate_test_fraction,
            help='Share of every batch of DFT frames (initial and fresh) held out from the start, rounded up: the test '
            'set, never trained on and never used to judge convergence.',
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
            help='`max_frames` per iteration, `min_distance` (Å), `diversity` (random|entropy), '
            '`error_band` [lower, upper] on the max-atom force error (eV/Å).',
        )
        spec.input(
            'training',
            valid_type=orm.Dict,
            validator=validate_training,
            help="`parameters` (the family's training settings), `init_from` (foundation|previous), "
            "`old_data_fraction` (with previous), `align_energy` (shift the foundation's energy zero per element onto "
            'the initial DFT frames first; default true for a family whose fine-tuning keeps that zero, SevenNet; '
            'true for a single-task DeePMD checkpoint gives the aligned zero-shot model and allows `replay`).',
        )
        spec.input(
            'replay',
            valid_type=orm.Dict,
            required=False,
            validator=validate_replay,
            help='Keep what the foundation knew where the DFT data is silent: `exploration` (stages of task groups, '
            'e.g. supercells, defects, strains, heat-quench) run once with the energy-aligned foundation, whose '
            'labelled frames are mixed into every fine-tuning, `ratio` (default 1.0) per DFT frame trained on '
            '(seeded sample). Only for a foundation aligned before fine-tuning (SevenNet). Never in the test set.',
        )
        spec.input(
            'convergence',
            valid_type=orm.Dict,
            validator=validate_convergence,
            help='`force_rmse` (eV/Å), `energy_rmse` (eV/atom, optional), `max_iterations`; judged on the fresh '
            'frames of an iteration that are not held out.',
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
            if_(cls.should_replay)(
                cls.explore_replay,
                cls.collect_replay,
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
            cls.inspect_final_evaluation,
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
        spec.output(
            'replay_set',
            valid_type=LabeledDataset,
            required=False,
            help='The frames the aligned foundation explored and labelled for replay (with `replay`); every '
            'fine-tuning mixes a seeded sample of them in, `ratio` per DFT frame.',
        )
        spec.output(
            'test_set',
            valid_type=LabeledDataset,
            required=False,
            help='The held-out DFT frames: never trained on, never used for a decision.',
        )
        spec.output(
            'dft_frames',
            valid_type=LabeledDataset,
            required=False,
            help='Every DFT-labelled frame of the run, with per-frame attributes `frame_roles` (initial, held_out, '
            'trained_on, accurate, unphysical, not_trained, unassessed) and `frame_iterations`; on every exit code.',
        )
        spec.output(
            'history', valid_type=orm.Dict, required=False, help='Per iteration: counts, RMSEs, decision; the seeds.'
        )
        spec.output('metrics', valid_type=orm.Dict, required=False, help='Final model vs the test set.')
        spec.output(
            'foundation_metrics',
            valid_type=orm.Dict,
            required=False,
            help='The foundation zero-shot vs the test set (`zero_shot`; `aligned` too when its energy zero was '
            'aligned).',
        )
        spec.expose_outputs(DistillWorkChain, namespace='distill', namespace_options={'required': False})

        spec.exit_code(400, 'ERROR_NOT_CONVERGED', message='Not converged after {iterations} iterations; outputs kept.')
        spec.exit_code(401, 'ERROR_DFT_FAILURES', message='Fewer than half of the DFT labels succeeded: {message}')
        spec.exit_code(402, 'ERROR_NO_CANDIDATES', message='The exploration gave no candidate frame: {message}')
        spec.exit_code(403, 'ERROR_TRAINING_FAILED', message='Fine-tuning failed: {message}')
        spec.exit_code(404, 'ERROR_EXPLORATION_FAILED', message='Every exploration job failed: {message}')
        spec.exit_code(405, 'ERROR_EVALUATION_FAILED', message='The model evaluation failed: {message}')
        spec.exit_code(406, 'ERROR_DISTILLATION_FAILED', message='The distillation failed: {message}')
        spec.exit_code(
            407, 'ERROR_FINAL_EVALUATION_FAILED', message='The evaluation on the held-out frames failed: {message}'
        )

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
            'se_atten_v2_compact', 'options': ...}`` for ``protocols/distill.yaml`` (``{}``: the default preset);
            ``options`` are the distillation's ``metadata.options`` per job kind.
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

        from .labelling.quantumespresso import all_kinds_structure

        pw = get_pw_builder(
            codes['pw'], all_kinds_structure(structures), protocol=preset.get('dft_protocol'), overrides=dft_overrides
        )

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
        if 'test_fraction' in preset:
            builder.test_fraction = orm.Float(preset['test_fraction'])
        if 'seed' in preset:
            builder.seed = orm.Int(preset['seed'])
        dft = builder.dft
        dft.pw.code = pw.pw.code
        dft.pw.parameters = pw.pw.parameters
        dft.pw.pseudos = pw.pw.pseudos
        dft.pw.metadata = pw.pw.metadata
        dft.kpoints_distance = pw.kpoints_distance
        dft.kpoints_force_parity = pw.kpoints_force_parity
        dft.max_iterations = pw.max_iterations
        if distill is not None:
            settings = distill_preset(distill.get('protocol'), distill.get('overrides'), distill.get('student'))
            for port, node in preset_inputs(settings).items():
                builder.distill[port] = node
            if distill.get('options'):
                builder.distill.options = orm.Dict(distill['options'])
        return builder

    # -- steps ----------------------------------------------------------------------------------------------------

    def setup(self):
        given = (adaptor.namespace for adaptor in ADAPTORS if self.inputs.get(adaptor.namespace))
        self.ctx.adaptor_namespace = next(given)
        self.ctx.seed = self.inputs.seed.value
        self.ctx.iteration = 0
        self.ctx.converged = False
        self.ctx.history = []
        self.ctx.seeds = {'seed': self.ctx.seed}
        self.ctx.initial = {}
        # The ledger: every DFT frame (one-frame datasets) in the order labelled, with its role and iteration.
        self.ctx.frames, self.ctx.roles, self.ctx.frame_iterations = [], [], []
        self.ctx.training_frames = []  # frames trained on, in the order they were added
        self.ctx.fresh_frames = []
        self.ctx.failures = []  # every failed job the run went on from or stopped at (``history.failures``)
        self.ctx.metric_nodes = {}
        self.ctx.foundation = self.inputs.foundation_model
        self.ctx.model = None
        self.ctx.checkpoint = None
        self.ctx.training_set = None
        self.ctx.test_set = None

    def _adaptor(self):
        return get_adaptor(self.ctx.adaptor_namespace)

    def perturb(self):
        """Random perturbations of each input structure (each with its own seed): the first DFT frames."""
        self.ctx.initial_structures = {}
        seeds = {}
        for index, (name, structure) in enumerate(sorted(self.inputs.structures.items())):
            seeds[name] = derive_seed(self.ctx.seed, 'perturb', index)
            parameters = orm.Dict({**self.inputs.perturbation.get_dict(), 'seed': seeds[name]})
            frames = perturb_structure(structure, parameters)
            for key, frame in split_into_structures(frames).items():
                self.ctx.initial_structures[f'{name}_{key}'] = frame
        self.ctx.seeds['perturbation'] = seeds
        self.report(
            f'perturbed {len(self.inputs.structures)} structure(s) into {len(self.ctx.initial_structures)} frames'
        )

    def label_initial(self):
        return self._submit_labels(self.ctx.initial_structures, prefix='dft_initial')

    def collect(self):
        """Hold out a seeded share of the initial frames; the rest is the first training set."""
        frames, failures = self._collect_labels()
        self.ctx.initial = {'dft_labelled': len(frames) + len(failures), 'dft_failed': len(failures)}
        if not frames or len(frames) < len(failures):
            self._record(frames, ['unassessed'] * len(frames), 0)
            return self._stop(
                self.exit_codes.ERROR_DFT_FAILURES,
                message=f'initial frames: {len(failures)} of '
                f'{len(frames) + len(failures)} failed ({", ".join(failures)})',
            )
        seed = derive_seed(self.ctx.seed, 'held_out', 0)
        parameters = {'n_frames': len(frames), 'test_fraction': self.inputs.test_fraction.value, 'seed': seed}
        assignment = assign_initial_roles(orm.Dict(parameters))
        self.ctx.metric_nodes['roles_initial'] = assignment
        self._record(frames, assignment['roles'], 0)
        self.ctx.training_frames = self._frames_with_role('initial')
        self.ctx.training_set = merge_datasets(**self._frame_kwargs(self.ctx.training_frames))
        held_out = len(assignment['held_out_indices'])
        self.ctx.initial.update(held_out=held_out, trained_on=len(frames) - held_out, held_out_seed=seed)
        self.report(
            f'{len(frames)} initial DFT frames labelled ({len(failures)} failed): training on '
            f'{len(frames) - held_out}, holding out {held_out}'
        )

    def should_align_energy(self):
        return aligns_energy(self.inputs.foundation_model, self.inputs.training.get_dict())

    def evaluate_foundation(self):
        """Zero-shot errors of the foundation on the initial DFT frames it is fine-tuned on."""
        node = self._submit_evaluation(
            self.ctx.training_set, 'evaluate_foundation', model=self.inputs.foundation_model, head=self._branch()
        )
        return ToContext(foundation_evaluation=node)

    def align_foundation(self):
        """Shift the foundation's per-element energy zero onto the DFT code's (least squares on the training frames)."""
        node = self.ctx.foundation_evaluation
        if not node.is_finished_ok:
            return self._stop_on_failed('evaluation', node, self.exit_codes.ERROR_EVALUATION_FAILED)
        metrics = node.outputs.metrics
        self.ctx.metric_nodes['foundation'] = metrics
        alignment = fit_energy_offsets(node.outputs.errors, self.ctx.training_set)
        self.ctx.foundation = shift_model_energy(self.inputs.foundation_model, alignment)
        offsets = ', '.join(f'{element} {value:+.4f}' for element, value in alignment['offsets'].items())
        self.report(
            f'foundation zero-shot on {metrics["n_frames"]} DFT frames: force RMSE {metrics["force_rmse"]:.4f} eV/Å, '
            f'energy RMSE {metrics["energy_rmse_per_atom"]:.4f} eV/atom; energy zero shifted by {offsets} eV/atom '
            f'(residual {alignment["residual_energy_rmse_per_atom"] * 1000:.2f} meV/atom)'
        )
        return None

    def should_replay(self):
        return 'replay' in self.inputs

    def explore_replay(self):
        """MD with the aligned foundation over the replay task groups: frames of what it knew, in its own labels."""
        jobs = submit_task_groups(
            self,
            [group for stage in self.inputs.replay['exploration']['stages'] for group in stage],
            self.ctx.foundation,
            seed_of=lambda index: derive_seed(self.ctx.seed, 'replay_md', index),
            label_of=lambda index: f'replay_{index:03d}',
            key_prefix='replay_md_',
            options=self._options('md'),
            head=self._branch(),
        )
        self.report(f'exploring with the aligned foundation for replay frames: {len(jobs)} MD job(s)')
        return ToContext(**jobs)

    def collect_replay(self):
        self.ctx.replay_pool = explored_frames(self, 'replay_md_')
        if self.ctx.replay_pool is None:
            self.report('the replay exploration gave no frames: fine-tuning on DFT frames only')
            return None
        self.out('replay_set', self.ctx.replay_pool)
        self.report(f'{self.ctx.replay_pool.n_frames} replay frames labelled by the aligned foundation')
        return None

    def _with_replay(self, training_set: LabeledDataset) -> LabeledDataset:
        """``training_set`` plus a seeded sample of ``ratio`` replay frames per frame (all of them, if fewer)."""
        pool = self.ctx.get('replay_pool')
        if pool is None:
            return training_set
        wanted = min(
            pool.n_frames, max(1, round(self.inputs.replay.get_dict().get('ratio', 1.0) * training_set.n_frames))
        )
        chosen = sample_indices(pool.n_frames, wanted, derive_seed(self.ctx.seed, 'replay', self.ctx.iteration))
        self.ctx.seeds.setdefault('replay', {})[str(self.ctx.iteration)] = chosen
        return merge_datasets(dft=training_set, replay=subset_dataset(pool, orm.List(chosen)))

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
        dft_frames = training_set.n_frames
        training_set = self._with_replay(training_set)
        parameters, seed = backend.with_seed(
            training.get('parameters', {}), derive_seed(self.ctx.seed, 'train', self.ctx.iteration)
        )
        self.ctx.seeds.setdefault('training', {})[str(self.ctx.iteration)] = seed
        inputs = backend.finetune_inputs(
            code=self.inputs.codes[backend.train_code],
            foundation=foundation,
            training_set=training_set,
            parameters=parameters,
            model_branch=branch,
            options=self._options('train'),
        )
        factor = training.get('divergence_learning_rate_factor', DEFAULT_LEARNING_RATE_FACTOR)
        node = self.submit(
            WorkflowFactory(backend.train_workchain),
            train=inputs,
            learning_rate_factor=orm.Float(factor),
            metadata={'call_link_label': f'finetune_{self.ctx.iteration:02d}'},
        )
        origin = 'previous model' if start_from_previous else 'foundation'
        replayed = training_set.n_frames - dft_frames
        mix = f' ({dft_frames} DFT, {replayed} replay)' if replayed else ''
        self.report(
            f'fine-tuning {node.process_label}<{node.pk}> from the {origin} on {training_set.n_frames} frames{mix}'
        )
        return ToContext(train=node)

    def inspect_finetune(self):
        node = self.ctx.train
        attempts = sorted(node.called, key=lambda attempt: attempt.ctime)
        for index, attempt in enumerate(attempts):
            if not attempt.is_finished_ok:
                restarted = index + 1 < len(attempts)
                self._record_failure('training', attempt, 'restarted' if restarted else 'fine-tuning stopped')
        if not node.is_finished_ok:
            return self._stop(
                self.exit_codes.ERROR_TRAINING_FAILED,
                message=f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}',
            )
        self.ctx.model = node.outputs.model
        self.ctx.checkpoint = node.outputs.checkpoint if 'checkpoint' in node.outputs else node.outputs.model
        self.ctx.trained_frames = len(self.ctx.training_frames)
        return None

    def should_iterate(self):
        return not self.ctx.converged and self.ctx.iteration < self.inputs.convergence['max_iterations']

    def explore(self):
        """MD with the current model, one ``pfd.md.ase`` job per task group of this iteration's stage."""
        self.ctx.iteration += 1
        iteration = self.ctx.iteration
        self.ctx.entry = {'iteration': iteration, 'seeds': {}}
        stages = self.inputs.exploration['stages']
        stage = stages[min(iteration, len(stages)) - 1]
        jobs = submit_task_groups(
            self,
            stage,
            self.ctx.model,
            seed_of=lambda index: derive_seed(self.ctx.seed, 'md', iteration, index),
            label_of=lambda index: f'explore_{iteration:02d}_{index:03d}',
            key_prefix='md_',
            options=self._options('md'),
        )
        self.ctx.entry['seeds']['md'] = [jobs[key].inputs.parameters['seed'] for key in sorted(jobs)]
        self.report(f'iteration {iteration}: exploring with {len(jobs)} MD job(s)')
        return ToContext(**jobs)

    def select_candidates(self):
        keys = sorted(key for key in self.ctx if key.startswith('md_'))
        frames = {}
        for key in keys:
            node = self.ctx[key]
            if 'frames' in node.outputs:  # unstable trajectories (exit 400) keep the frames before the blow-up
                frames[key] = node.outputs.frames
            else:
                self.report(f'{node.process_label}<{node.pk}> gave no frames: [{node.exit_status}] {node.exit_message}')
            if not node.is_finished_ok:
                kept = 'the frames before it kept' if key in frames else 'no frames'
                self._record_failure('exploration', node, kept)
        for key in keys:
            del self.ctx[key]
        if not frames:
            return self._stop(self.exit_codes.ERROR_EXPLORATION_FAILED, message=f'{len(keys)} MD job(s) failed')

        candidates = merged_frames(frames)
        selection = {key: value for key, value in self.inputs.selection.get_dict().items() if key != 'error_band'}
        selection['seed'] = derive_seed(self.ctx.seed, 'select', self.ctx.iteration)
        self.ctx.entry['seeds']['selection'] = selection['seed']
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
        return None

    def label(self):
        return self._submit_labels(self.ctx.selected, prefix=f'dft_{self.ctx.iteration:02d}')

    def evaluate(self):
        frames, failures = self._collect_labels()
        self.ctx.entry.update(dft_labelled=len(frames) + len(failures), dft_failed=len(failures))
        self.ctx.fresh_frames = frames
        if not frames or len(frames) < len(failures):
            return self._stop(
                self.exit_codes.ERROR_DFT_FAILURES,
                message=f'iteration {self.ctx.iteration}: '
                f'{len(failures)} of {len(frames) + len(failures)} failed ({", ".join(failures)})',
            )
        fresh = merge_datasets(**self._frame_kwargs(frames))
        node = self._submit_evaluation(fresh, f'evaluate_{self.ctx.iteration:02d}')
        return ToContext(evaluation=node)

    def check_convergence(self):
        """Hold out a seeded share of the fresh frames, judge the model on the rest, and assign every frame its role."""
        node = self.ctx.evaluation
        if not node.is_finished_ok:
            return self._stop_on_failed('evaluation', node, self.exit_codes.ERROR_EVALUATION_FAILED)
        iteration = self.ctx.iteration
        seed = derive_seed(self.ctx.seed, 'held_out', iteration)
        parameters = {
            'test_fraction': self.inputs.test_fraction.value,
            'seed': seed,
            'error_band': list(self.inputs.selection['error_band']),
            'convergence': self.inputs.convergence.get_dict(),
            'last': iteration >= self.inputs.convergence['max_iterations'],
        }
        assessment = assess_iteration(node.outputs.errors, orm.Dict(parameters))
        self.ctx.metric_nodes[f'iteration_{iteration:02d}'] = node.outputs.metrics
        self.ctx.metric_nodes[f'roles_{iteration:02d}'] = assessment
        result = assessment.get_dict()
        fresh, self.ctx.fresh_frames = self.ctx.fresh_frames, []
        self._record(fresh, result['roles'], iteration)
        self.ctx.added = [frame for frame, role in zip(fresh, result['roles']) if role == 'trained_on']
        self.ctx.converged = result['converged']

        counts = result['counts']
        added = counts.get('trained_on', 0)
        if result['converged']:
            verdict = 'converged'
        elif result['last']:
            verdict = f'not converged after the last iteration: fine-tuning once more, on {added} more frames'
        else:
            verdict = f'not converged, adding {added} frames'
        judged, held_out = result['judged'], result['held_out']
        self.ctx.entry['seeds']['held_out'] = seed
        self.ctx.entry.update(
            force_rmse=judged['force_rmse'],
            energy_rmse_per_atom=judged['energy_rmse_per_atom'],
            judged_on=result['judged_on'],
            frames_judged=judged['n_frames'],
            held_out_force_rmse=held_out['force_rmse'],
            held_out_energy_rmse_per_atom=held_out['energy_rmse_per_atom'],
            frames_added=added,
            frames_held_out=counts.get('held_out', 0),
            frames_accurate=counts.get('accurate', 0),
            frames_unphysical=counts.get('unphysical', 0),
            frames_not_trained=counts.get('not_trained', 0),
            converged=result['converged'],
            decision=verdict,
            reason=result['reason'],
        )
        self.ctx.history.append(self.ctx.entry)
        self.report(f'iteration {iteration}: on {result["judged_on"]}: {result["reason"]}: {verdict}')
        return None

    def should_refine(self):
        """Fine-tune again on the frames just added (after the last iteration too: the DFT frames are paid for; the
        held-out test set judges the result)."""
        return bool(self.ctx.added)

    def add_frames(self):
        self.ctx.training_frames = self.ctx.training_frames + self.ctx.added
        self.ctx.training_set = merge_datasets(**self._frame_kwargs(self.ctx.training_frames))

    def final_evaluation(self):
        """The final model, the foundation zero-shot and (if aligned) the aligned foundation on the held-out frames."""
        held_out = self._frames_with_role('held_out')
        if not held_out:
            return None
        self.ctx.test_set = merge_datasets(**self._frame_kwargs(held_out))
        jobs = {'final': self._submit_evaluation(self.ctx.test_set, 'evaluate_final')}
        jobs['final_zero_shot'] = self._submit_evaluation(
            self.ctx.test_set, 'evaluate_zero_shot', model=self.inputs.foundation_model, head=self._branch()
        )
        if self.ctx.foundation.pk != self.inputs.foundation_model.pk:
            jobs['final_aligned'] = self._submit_evaluation(
                self.ctx.test_set, 'evaluate_aligned_foundation', model=self.ctx.foundation, head=self._branch()
            )
        self.report(f'evaluating {len(jobs)} model(s) on the {self.ctx.test_set.n_frames} held-out DFT frames')
        return ToContext(**jobs)

    def inspect_final_evaluation(self):
        if self.ctx.test_set is None:
            return self._stop(self.exit_codes.ERROR_FINAL_EVALUATION_FAILED, message='no DFT frame was held out')
        failed = [
            node
            for key in ('final', 'final_zero_shot', 'final_aligned')
            if (node := self.ctx.get(key)) is not None and not node.is_finished_ok
        ]
        if failed:
            return self._stop_on_failed('final_evaluation', failed, self.exit_codes.ERROR_FINAL_EVALUATION_FAILED)
        metrics = self.ctx.final.outputs.metrics
        self.out('metrics', metrics)
        foundation = {'zero_shot': self.ctx.final_zero_shot.outputs.metrics}
        if 'final_aligned' in self.ctx:
            foundation['aligned'] = self.ctx.final_aligned.outputs.metrics
        self.out('foundation_metrics', assemble_metrics(**foundation))
        zero_shot = foundation['zero_shot']
        self.report(
            f'on the {metrics["n_frames"]} held-out DFT frames: final model force RMSE {metrics["force_rmse"]:.4f} '
            f'eV/Å, energy RMSE {metrics["energy_rmse_per_atom"] * 1000:.2f} meV/atom; foundation zero-shot '
            f'{zero_shot["force_rmse"]:.4f} eV/Å, {zero_shot["energy_rmse_per_atom"] * 1000:.2f} meV/atom'
        )
        return None

    def should_distill(self):
        return bool(self.inputs.get('distill')) and self.ctx.model is not None

    def distill(self):
        """Distil the fine-tuned model; the held-out DFT frames are the reference."""
        inputs = AttributeDict(self.exposed_inputs(DistillWorkChain, namespace='distill'))
        inputs.teacher = self.ctx.model
        inputs.structures = dict(self.inputs.structures)
        inputs.codes = {key: self.inputs.codes[key] for key in ('python', 'dp')}
        inputs.reference_set = self.ctx.test_set
        if 'seed' not in inputs:
            inputs.seed = orm.Int(derive_seed(self.ctx.seed, 'distill'))
        self.ctx.seeds['distill'] = inputs.seed.value
        inputs.metadata = {'call_link_label': 'distill'}
        node = self.submit(DistillWorkChain, **inputs)
        self.report(f'distilling the fine-tuned model: {node.process_label}<{node.pk}>')
        return ToContext(distillation=node)

    def results(self):
        if 'distillation' in self.ctx and not self.ctx.distillation.is_finished_ok:
            self._record_failure('distillation', self.ctx.distillation, 'the fine-tuned model is kept')
        self._attach_outputs()
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

    def _branch(self) -> orm.Str | None:
        return self.inputs.get('model_branch')

    def _record(self, frames: list[LabeledDataset], roles, iteration: int) -> None:
        """Enter ``frames`` into the ledger with their ``roles``."""
        self.ctx.frames = self.ctx.frames + list(frames)
        self.ctx.roles = self.ctx.roles + list(roles)
        self.ctx.frame_iterations = self.ctx.frame_iterations + [iteration] * len(frames)

    def _frames_with_role(self, *roles: str) -> list[LabeledDataset]:
        return [frame for frame, role in zip(self.ctx.frames, self.ctx.roles) if role in roles]

    def _submit_labels(self, structures: dict, prefix: str):
        jobs = {}
        for index, name in enumerate(sorted(structures)):
            inputs = self._adaptor().get_inputs(self, structures[name], f'{prefix}_{index:04d}')
            jobs[f'dft_{index:04d}'] = self.submit(self._adaptor().process_class, **inputs)
        self.report(f'submitted {len(jobs)} DFT calculation(s)')
        return ToContext(**jobs)

    def _collect_labels(self) -> tuple[list[LabeledDataset], list[str]]:
        """The one-frame datasets of the finished DFT runs; a failed run, or one whose result cannot be read, is
        reported and skipped."""
        frames, failures = [], []
        for key in sorted(key for key in self.ctx if key.startswith('dft_')):
            node = self.ctx[key]
            del self.ctx[key]
            invalidate_failed(node)  # no failed DFT job is re-used from the cache (aiida-quantumespresso's 4xx are)
            if not node.is_finished_ok:
                failures.append(f'{node.process_label}<{node.pk}> [{node.exit_status}]')
                self._record_failure('dft', node, 'frame skipped')
                self.report(f'DFT {node.process_label}<{node.pk}> failed [{node.exit_status}], frame skipped')
                continue
            try:
                frames.append(self._adaptor().to_dataset(node))
            except Exception as exception:
                failures.append(f'{node.process_label}<{node.pk}> (result unreadable)')
                self._record_failure('dft', node, f'frame skipped: its result could not be read ({exception})')
                self.report(f'DFT {node.process_label}<{node.pk}>: its result could not be read ({exception}), skipped')
        return frames, failures

    def _submit_evaluation(
        self, reference: LabeledDataset, label: str, model: ModelData | None = None, head: orm.Str | None = None
    ):
        inputs = {
            'code': self.inputs.codes['python'],
            'model': model or self.ctx.model,
            'reference': reference,
            'metadata': {'call_link_label': label, 'options': self._options('evaluate')},
        }
        if head is not None:
            inputs['model_head'] = head
        return self.submit(EvaluateCalculation, **inputs)

    def _previous_plus_new(self, fraction: float) -> LabeledDataset:
        """New frames since the last fine-tuning plus a seeded ``fraction`` of the older ones."""
        old, new = (
            self.ctx.training_frames[: self.ctx.trained_frames],
            self.ctx.training_frames[self.ctx.trained_frames :],
        )
        keep = round(fraction * len(old))
        chosen = sample_indices(len(old), keep, derive_seed(self.ctx.seed, 'old_data', self.ctx.iteration))
        frames = [old[i] for i in chosen] + new
        return merge_datasets(**self._frame_kwargs(frames)) if frames else self.ctx.training_set

    @staticmethod
    def _frame_kwargs(frames: list[LabeledDataset]) -> dict:
        return {f'frame_{index:05d}': frame for index, frame in enumerate(frames)}

    def _options(self, kind: str) -> dict:
        return dict(self.inputs.options.get(kind, {})) if 'options' in self.inputs else {}

    def _attach_outputs(self):
        """Attach what exists: models, the training and test sets, the DFT ledger and the history."""
        if self.ctx.model is not None:
            self.out('model', self.ctx.model)
            self.out('checkpoint', self.ctx.checkpoint)
        if self.ctx.foundation.pk != self.inputs.foundation_model.pk:
            self.out('aligned_foundation', self.ctx.foundation)
        if self.ctx.training_set is not None:
            self.out('training_set', self.ctx.training_set)
        held_out = self._frames_with_role('held_out')
        if held_out:
            if self.ctx.test_set is None:
                self.ctx.test_set = merge_datasets(**self._frame_kwargs(held_out))
            self.out('test_set', self.ctx.test_set)
        if self.ctx.fresh_frames:  # labelled, but the run stopped before they were judged
            self._record(self.ctx.fresh_frames, ['unassessed'] * len(self.ctx.fresh_frames), self.ctx.iteration)
            self.ctx.fresh_frames = []
        if self.ctx.frames:
            table = orm.Dict({'roles': self.ctx.roles, 'iterations': self.ctx.frame_iterations})
            self.out('dft_frames', build_ledger(table, **self._frame_kwargs(self.ctx.frames)))
        if self.ctx.history or self.ctx.metric_nodes or self.ctx.initial or self.ctx.failures:
            run = orm.Dict({'seeds': self.ctx.seeds, 'initial': self.ctx.initial, 'failures': self.ctx.failures})
            self.out('history', assemble_history(orm.List(self.ctx.history), run, **self.ctx.metric_nodes))

    def _record_failure(self, step: str, node, action: str) -> None:
        """Enter a failed job into ``history.failures``: its step, process, exit status and message, what followed."""
        entry = {
            'iteration': self.ctx.iteration,
            'step': step,
            'process': f'{node.process_label}<{node.pk}>',
            'exit_status': node.exit_status,
            'message': node.exit_message or node.process_state.value,
            'action': action,
        }
        self.ctx.failures = [*self.ctx.failures, entry]

    def _stop_on_failed(self, step: str, nodes, exit_code):
        """Record the failed job(s) ``nodes`` of ``step`` in ``history.failures`` and stop with ``exit_code``, its
        message naming each job, its exit status and message."""
        nodes = nodes if isinstance(nodes, list) else [nodes]
        for node in nodes:
            self._record_failure(step, node, 'run stopped')
        described = (f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}' for node in nodes)
        return self._stop(exit_code, message='; '.join(described))

    def _stop(self, exit_code, **kwargs):
        """Attach what exists so far and return ``exit_code``: nothing labelled is lost."""
        self._attach_outputs()
        return exit_code.format(**kwargs)
