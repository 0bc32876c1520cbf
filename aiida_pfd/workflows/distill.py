"""``pfd.distill``: distil a (fine-tuned) teacher model into a small DeePMD student trained from scratch.

Outline::

    explore (MD with the teacher; the sampled frames carry the teacher's labels) → collect (sample
    ``n_frames``, split off ``test_fraction``) → train_student (``pfd.deepmd.train`` with, if ``zbl`` is given, the
    ZBL pair table blended in at short range; then ``dp --pt compress`` unless ``compress`` is False) →
    inspect_student → while_(rounds given and left): explore_with_student (and score it on the held-out teacher
    frames) → label_with_teacher (a sample of its frames) → score_round (stop: target, no improvement) →
    add_disagreeing (the frames of largest disagreement join the training set) → if_(not stopped): train_student →
    inspect_student →
    evaluate (student vs the teacher's held-out labels; student and teacher vs the DFT
    ``reference_set``; with ``stability``, the student's ``pfd.stability`` MD beside them) →
    if_(speed given): measure_speed (both side by side in one ``pfd.speed`` job, after the evaluations) → results
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction, if_, while_
from aiida.plugins import CalculationFactory

from ..data import LabeledDataset, ModelData
from ..data.operations import merge_datasets, split_dataset, subset_dataset, with_type_map
from ..protocols import get_protocol, load_protocols
from ..seeds import derive_seed, sample_indices
from ..validation import check_option_kinds, check_structures, unknown_keys
from ..zbl import zbl_pair_table
from .exploration import explored_frames, submit_task_groups, unknown_structures, validate_exploration

DeepmdTrainCalculation = CalculationFactory('pfd.deepmd.train')
EvaluateCalculation = CalculationFactory('pfd.evaluate')
LabelCalculation = CalculationFactory('pfd.label')
SpeedCalculation = CalculationFactory('pfd.speed')
StabilityCalculation = CalculationFactory('pfd.stability')

#: DeePMD descriptors with a type embedding: the only ones DeePMD's DP-ZBL model (``use_srtab``) accepts.
MIXED_TYPE_DESCRIPTORS = ('se_atten', 'se_atten_v2', 'dpa1', 'dpa2', 'dpa3')

#: Evaluations: link label -> (model, reference) roles.
EVALUATIONS = {
    'student_vs_teacher': ('student', 'test_set'),
    'student_vs_dft': ('student', 'reference_set'),
    'teacher_vs_dft': ('teacher', 'reference_set'),
}


@calcfunction
def assemble_rounds(log: orm.List) -> orm.Dict:
    """The iterative distillation's rounds as one Dict."""
    return orm.Dict({'rounds': log.get_list()})


@calcfunction
def assemble_metrics(**nodes: orm.Dict) -> orm.Dict:
    """One ``metrics`` Dict from the evaluations (``student_vs_teacher``...) and, if run, the ``speed`` measurement."""
    return orm.Dict({key: node.get_dict() for key, node in nodes.items()})


def student_template(name: str) -> dict:
    """The DeePMD ``model`` section of the student ``name`` in ``protocols/distill.yaml`` (``se_e2_a``, ...)."""
    students = load_protocols('distill')['students']
    if name not in students:
        raise ValueError(f'unknown student `{name}`: choose one of {", ".join(students)}.')
    return students[name]


def validate_student(value, _=None) -> str | None:
    student = value.get_dict()
    if 'descriptor' not in student.get('model', {}):
        return 'student: give a DeePMD input.json with at least `model.descriptor` (see protocols/distill.yaml).'
    if 'numb_steps' not in student.get('training', {}):
        return 'student: set `training.numb_steps`.'
    return None


#: The ZBL blending range by default, as fractions of the smallest covalent-radius sum of the student's elements:
#: for Si (2.22 Å) pure ZBL below 1.11 Å, pure network above 1.67 Å (the shortest Si-Si distance in MD at 1500 K is
#: about 2 Å).
ZBL_RANGE = {'sw_rmin': 0.5, 'sw_rmax': 0.75}


def validate_zbl(value, _=None) -> str | None:
    zbl = value.get_dict()
    problem = unknown_keys('zbl', zbl, ('sw_rmin', 'sw_rmax', 'smin_alpha'), hint='({} for the default range.)')
    if problem:
        return problem
    if any(not isinstance(value, (int, float)) or value <= 0 for value in zbl.values()):
        return 'zbl: give positive numbers (Å for `sw_rmin` and `sw_rmax`).'
    if 'sw_rmin' in zbl and 'sw_rmax' in zbl and zbl['sw_rmin'] >= zbl['sw_rmax']:
        return 'zbl: give `sw_rmin` < `sw_rmax` (pure ZBL below sw_rmin, pure network above sw_rmax).'
    return None


def zbl_blending(zbl: dict, elements) -> dict:
    """``zbl`` with the blending range not given filled in from the elements' covalent radii (:data:`ZBL_RANGE`)."""
    from ase.data import atomic_numbers, covalent_radii

    shortest = 2 * min(covalent_radii[atomic_numbers[element]] for element in elements)
    blending = {key: round(fraction * shortest, 4) for key, fraction in ZBL_RANGE.items()}
    return {**blending, **zbl}


def validate_stability(value, _=None) -> str | None:
    from ..calculations.stability import check_parameters

    parameters = value.get_dict()
    parameters.setdefault('temperatures', [1.0])  # filled from the exploration when absent
    problem = check_parameters(parameters)
    return f'stability: {problem}' if problem else None


ROUNDS_DEFAULTS = {'max_rounds': 3, 'frames': 100, 'candidates': 400, 'min_improvement': 0.05, 'target': None}


def validate_rounds(value, _=None) -> str | None:
    rounds = value.get_dict()
    problem = unknown_keys('rounds', rounds, ROUNDS_DEFAULTS)
    if problem:
        return problem
    settings = {**ROUNDS_DEFAULTS, **rounds}
    for key in ('max_rounds', 'frames', 'candidates'):
        if not isinstance(settings[key], int) or isinstance(settings[key], bool) or settings[key] < 1:
            return f'rounds.{key}: give an integer >= 1.'
    if settings['frames'] > settings['candidates']:
        return 'rounds: `frames` (added per round) cannot exceed `candidates` (teacher-labelled per round).'
    if not 0 <= settings['min_improvement'] < 1:
        return 'rounds.min_improvement: give a relative improvement in [0, 1).'
    if settings['target'] is not None and not settings['target'] > 0:
        return 'rounds.target: give a student-vs-teacher force RMSE in eV/Å (> 0), or leave it out.'
    return None


def stability_temperatures(exploration: dict) -> list[float]:
    """The highest temperature the exploration reaches (heat-quench peaks included) and 1.2 x above it."""
    highest = max(
        max([*group['temperatures'], group.get('peak_temperature') or 0])
        for stage in exploration['stages']
        for group in stage
    )
    return [float(highest), round(1.2 * highest, 6)]


#: The job kinds of ``options``.
OPTION_KINDS = ('md', 'train', 'evaluate', 'speed', 'stability')


def check_speed(speed: dict) -> str | None:
    """What is wrong with the ``speed`` input (``pfd.speed`` parameters), or None."""
    from ..calculations.speed import DEFAULTS, check_parameters

    problem = unknown_keys('speed', speed, DEFAULTS, hint='(`pfd.speed` parameters.)')
    if problem:
        return problem
    problem = check_parameters(speed)
    return f'speed: {problem}' if problem else None


def validate_inputs(inputs, ctx=None) -> str | None:
    """Cross-checks; when exposed in ``PFDWorkChain`` (ports excluded), only those on the ports present."""
    if ctx is None or 'structures' in ctx:
        problem = check_structures('structures', inputs.get('structures', {}))
        if problem:
            return problem
    problem = check_option_kinds(inputs.get('options'), OPTION_KINDS)
    if problem:
        return problem
    speed = inputs.get('speed')
    if speed is not None and (problem := check_speed(speed.get_dict())):
        return problem
    zbl, student = inputs.get('zbl'), inputs.get('student')
    if zbl is not None and student is not None:
        descriptor = student.get_dict().get('model', {}).get('descriptor', {}).get('type')
        if descriptor not in MIXED_TYPE_DESCRIPTORS:
            return (
                'zbl: DeePMD blends a pair table only into a type-embedding descriptor '
                f'({", ".join(MIXED_TYPE_DESCRIPTORS)}), '
                f'not `{descriptor}`: choose the student `se_atten_v2_compact`, or leave `zbl` out.'
            )
    stability = inputs.get('stability')
    if stability is not None:
        periodic = [name for name, structure in inputs.get('structures', {}).items() if all(structure.pbc)]
        if (ctx is None or 'structures' in ctx) and not periodic:
            return 'stability: the MD test needs a periodic structure among `structures`; leave `stability` out.'
    teacher = inputs.get('teacher')
    structures = inputs.get('structures', {})
    if teacher is not None:
        elements = sorted({kind.symbol for structure in structures.values() for kind in structure.kinds})
        missing = teacher.missing_elements(elements)
        if missing:
            return f'teacher: its type map lacks {missing}; it cannot label these structures.'
        head = inputs.get('teacher_head')
        if teacher.heads and head is None:
            return f'teacher_head: the teacher is multi-task; choose one of {teacher.heads}.'
        if head is not None and head.value not in teacher.heads:
            return f'teacher_head: `{head.value}` is not a head of the teacher ({teacher.heads or "none"}).'
    unknown = unknown_structures(inputs.get('exploration'), structures)
    if unknown and (ctx is None or 'structures' in ctx):  # exposed in PFDWorkChain: PFD checks the names
        return f'exploration: task group names unknown structures {unknown}.'
    fraction = inputs.get('test_fraction')
    if fraction is not None and not 0.0 < fraction.value < 1.0:
        return 'test_fraction: give a fraction strictly between 0 and 1.'
    n_frames = inputs.get('n_frames')
    if n_frames is not None and n_frames.value < 2:
        return 'n_frames: give at least 2 (training and test frames).'
    for key in ('python', 'dp'):
        if (ctx is None or 'codes' in ctx) and key not in inputs.get('codes', {}):
            return f'codes.{key}: give it (`python` runs the MD, evaluations and timings; `dp` trains the student).'
    return None


class DistillWorkChain(WorkChain):
    """Distil a teacher into a small DeePMD model trained from scratch on frames the teacher explored and labelled."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('teacher', valid_type=ModelData, help='The model to distil (any backend), e.g. a fine-tuned one.')
        spec.input('teacher_head', valid_type=orm.Str, required=False, help='Head of a multi-task teacher.')
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, help='Structures to explore.')
        spec.input_namespace('codes', valid_type=orm.AbstractCode, dynamic=True, help='`python` and `dp`.')
        spec.input(
            'exploration',
            valid_type=orm.Dict,
            validator=validate_exploration,
            help='`stages` of task groups (the PFD vocabulary); every task group of every stage runs once.',
        )
        spec.input('n_frames', valid_type=orm.Int, help='Teacher-labelled frames to keep (sampled at random).')
        spec.input('test_fraction', valid_type=orm.Float, default=lambda: orm.Float(0.1), help='Frames held out.')
        spec.input('seed', valid_type=orm.Int, default=lambda: orm.Int(0), help='Seeds the sampling and the split.')
        spec.input(
            'student',
            valid_type=orm.Dict,
            validator=validate_student,
            help='DeePMD input.json of the student (model, learning_rate, loss, training); type map and data are set '
            'by the job.',
        )
        spec.input(
            'compress',
            valid_type=orm.Bool,
            default=lambda: orm.Bool(True),
            help='Compress the student (`dp --pt compress`: tabulated embedding nets, several times faster MD). The '
            'compressed student is the one evaluated, timed and output as `model`; if compression fails, the '
            'uncompressed one is used.',
        )
        spec.input(
            'zbl',
            valid_type=orm.Dict,
            required=False,
            validator=validate_zbl,
            help='Blend the ZBL screened nuclear repulsion into the student at short range (DeePMD `use_srtab`): '
            '`sw_rmin`, `sw_rmax` in Å (pure ZBL below, pure network above; default 0.5 and 0.75 x the smallest '
            'covalent-radius sum), optional `smin_alpha`. Needs a type-embedding student such as '
            '`se_atten_v2_compact`.',
        )
        spec.input(
            'rounds',
            valid_type=orm.Dict,
            required=False,
            validator=validate_rounds,
            help='Iterative distillation: after each training the student runs the exploration itself, the teacher '
            'labels a seeded sample of `candidates` of its frames, and the `frames` where student and teacher '
            'disagree most (largest force error) join the training set; the student is retrained. Stops after '
            '`max_rounds` (3), when the student-vs-teacher force RMSE on the held-out teacher frames falls below '
            '`target` (eV/Å), or when it improved by less than `min_improvement` (0.05, relative).',
        )
        spec.input(
            'stability',
            valid_type=orm.Dict,
            required=False,
            validator=validate_stability,
            help='Run the student in MD before handing it over (`pfd.stability` parameters): NVT then NVE in a '
            'supercell of the first periodic structure; `temperatures` default to the highest exploration '
            'temperature and 1.2 x above it. A failed check ends the workchain with ERROR_STUDENT_UNSTABLE.',
        )
        spec.input(
            'reference_set',
            valid_type=LabeledDataset,
            required=False,
            help='DFT-labelled frames: both models are evaluated against them.',
        )
        spec.input(
            'speed',
            valid_type=orm.Dict,
            required=False,
            help='`pfd.speed` parameters (sizes, steps, warmup...): time teacher and student side by side.',
        )
        spec.input(
            'options',
            valid_type=orm.Dict,
            required=False,
            help='`metadata.options` per job kind: {"md": {...}, "train": {...}, "evaluate": {...}, "speed": {...}, '
            '"stability": {...}}.',
        )
        spec.inputs.validator = validate_inputs

        spec.outline(
            cls.explore,
            cls.collect,
            cls.train_student,
            cls.inspect_student,
            while_(cls.should_run_round)(
                cls.explore_with_student,
                cls.label_with_teacher,
                cls.score_round,
                cls.add_disagreeing,
                if_(cls.should_retrain)(
                    cls.train_student,
                    cls.inspect_student,
                ),
            ),
            cls.evaluate,
            if_(cls.should_time)(
                cls.measure_speed,
            ),
            cls.results,
        )

        spec.output(
            'model', valid_type=ModelData, required=False, help='The student, frozen (and compressed unless not asked).'
        )
        spec.output(
            'uncompressed_model',
            valid_type=ModelData,
            required=False,
            help='The frozen student before compression (when `model` is compressed).',
        )
        spec.output('checkpoint', valid_type=ModelData, required=False, help="The student's last checkpoint.")
        spec.output('training_set', valid_type=LabeledDataset, required=False, help='Teacher frames trained on.')
        spec.output('test_set', valid_type=LabeledDataset, required=False, help='Teacher frames held out.')
        spec.output(
            'metrics',
            valid_type=orm.Dict,
            required=False,
            help='`student_vs_teacher`, and with a reference `student_vs_dft` and `teacher_vs_dft` (pfd.evaluate '
            'metrics); `speed` (pfd.speed) when timed.',
        )

        spec.output(
            'rounds',
            valid_type=orm.Dict,
            required=False,
            help='Per round of the iterative distillation: training frames, the student vs the held-out teacher frames '
            '(force and energy RMSE), candidates, frames added, their largest force error, and why it stopped.',
        )
        spec.output(
            'stability',
            valid_type=orm.Dict,
            required=False,
            help="The student's `pfd.stability` results: per temperature the measurements, named checks and verdict.",
        )

        spec.exit_code(400, 'ERROR_EXPLORATION_FAILED', message='The exploration gave too few frames: {message}')
        spec.exit_code(401, 'ERROR_TRAINING_FAILED', message='The student training failed: {message}')
        spec.exit_code(402, 'ERROR_EVALUATION_FAILED', message='An evaluation failed: {message}')
        spec.exit_code(403, 'ERROR_SPEED_FAILED', message='The timing failed (other outputs kept): {message}')
        spec.exit_code(
            404,
            'ERROR_STUDENT_UNSTABLE',
            message='The student failed the MD stability checks (its model and results are attached): {message}',
        )

    @classmethod
    def get_builder_from_protocol(
        cls,
        codes: dict,
        teacher: ModelData,
        structures: dict,
        protocol: str | None = None,
        overrides: dict | None = None,
        student: str | None = None,
        reference_set: LabeledDataset | None = None,
        teacher_head: str | None = None,
    ):
        """A builder from ``protocols/distill.yaml``; ``student`` picks the descriptor template (default
        ``se_atten_v2_compact``; ``se_e2_a``, ``se_atten_v2``); ``overrides`` replace entries of the preset
        (``student`` merges into the input.json)."""
        codes = {key: orm.load_code(value) if isinstance(value, str) else value for key, value in codes.items()}
        preset = distill_preset(protocol, overrides, student)
        builder = cls.get_builder()
        builder.teacher = teacher
        if teacher_head:
            builder.teacher_head = orm.Str(teacher_head)
        builder.structures = structures
        builder.codes = {key: codes[key] for key in ('python', 'dp') if key in codes}
        for port, node in preset_inputs(preset).items():
            builder[port] = node
        if reference_set is not None:
            builder.reference_set = reference_set
        return builder

    # -- steps ----------------------------------------------------------------------------------------------------

    def explore(self):
        """MD with the teacher: every task group of every stage, side by side."""
        jobs = submit_task_groups(
            self,
            self._task_groups(),
            self.inputs.teacher,
            seed_of=lambda index: self.inputs.seed.value + index,
            label_of=lambda index: f'explore_{index}',
            key_prefix='md_',
            options=self._options('md'),
            head=self.inputs.get('teacher_head'),
        )
        self.report(f'exploring with the teacher: {len(jobs)} MD job(s)')
        return ToContext(**jobs)

    def collect(self):
        """Keep ``n_frames`` of the teacher-labelled frames (seeded sample) and split off the test frames."""
        explored = explored_frames(self, 'md_')
        if explored is None:
            return self.exit_codes.ERROR_EXPLORATION_FAILED.format(message='no MD job gave frames')
        wanted = self.inputs.n_frames.value
        if explored.n_frames < 2:
            return self.exit_codes.ERROR_EXPLORATION_FAILED.format(message=f'{explored.n_frames} frame(s) explored')
        if explored.n_frames > wanted:
            indices = sample_indices(explored.n_frames, wanted, self.inputs.seed.value)
            dataset = subset_dataset(explored, orm.List(indices))
        else:
            dataset = explored
            if explored.n_frames < wanted:
                self.report(f'the exploration gave {explored.n_frames} frames, fewer than the {wanted} asked for')
        split = split_dataset(dataset, self.inputs.test_fraction, self.inputs.seed)
        self.ctx.training_set, self.ctx.test_set = split['train'], split['test']
        self.report(
            f'{explored.n_frames} teacher-labelled frames explored; training on {self.ctx.training_set.n_frames}, '
            f'holding out {self.ctx.test_set.n_frames}'
        )
        return None

    def train_student(self):
        inputs = {
            'code': self.inputs.codes['dp'],
            'training_set': self.ctx.training_set,
            'parameters': self.inputs.student,
            'metadata': {'call_link_label': self._round_label('train_student'), 'options': self._options('train')},
        }
        if self.inputs.compress.value:
            inputs['settings'] = orm.Dict({'compress': True})
        if 'zbl' in self.inputs:
            student = self.inputs.student.get_dict()
            rcut = student['model']['descriptor'].get('rcut', 6.0)
            type_map = self.ctx.training_set.type_map
            inputs['pair_table'] = zbl_pair_table(orm.List(type_map), orm.Float(rcut))
            blending = zbl_blending(self.inputs.zbl.get_dict(), self.ctx.training_set.elements)
            student['model'].update(blending)
            inputs['parameters'] = orm.Dict(student)
            self.report(
                f'blending the ZBL repulsion into the student: pure ZBL below {blending["sw_rmin"]} Å, pure network '
                f'above {blending["sw_rmax"]} Å'
            )
        node = self.submit(DeepmdTrainCalculation, **inputs)
        steps = self.inputs.student['training']['numb_steps']
        descriptor = self.inputs.student['model']['descriptor'].get('type', '?')
        self.report(f'training the {descriptor} student from scratch: {node.process_label}<{node.pk}>, {steps} steps')
        return ToContext(train=node)

    def inspect_student(self):
        """The student to evaluate and time: the compressed one, or the frozen one if compression failed."""
        node = self.ctx.train
        failure = f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}'
        compression_failed = node.exit_status == DeepmdTrainCalculation.exit_codes.ERROR_COMPRESSION_FAILED.status
        if not node.is_finished_ok and not (compression_failed and 'model' in node.outputs):
            self._attach_outputs()
            return self.exit_codes.ERROR_TRAINING_FAILED.format(message=failure)
        if compression_failed:
            self.report(f'compression failed, going on with the uncompressed student: {failure}')
        self.ctx.student = node.outputs.compressed_model if 'compressed_model' in node.outputs else node.outputs.model
        self.ctx.student_train = node
        return None

    # -- iterative distillation -----------------------------------------------------------------------------------

    def _task_groups(self) -> list[dict]:
        """Every task group of every stage of ``exploration``."""
        return [group for stage in self.inputs.exploration['stages'] for group in stage]

    def _round_label(self, base: str) -> str:
        round_ = self.ctx.get('round', 0)
        return base if not round_ else f'{base}_r{round_}'

    def _rounds(self) -> dict:
        return {**ROUNDS_DEFAULTS, **self.inputs.rounds.get_dict()}

    def should_run_round(self):
        if 'rounds' not in self.inputs:
            return False
        self.ctx.setdefault('round_log', [])
        self.ctx.setdefault('round', 0)
        return not self.ctx.get('rounds_done') and self.ctx.round < self._rounds()['max_rounds']

    def explore_with_student(self):
        """Round r: the current student runs every task group; beside it, it is scored on the held-out frames."""
        self.ctx.round += 1
        round_ = self.ctx.round
        jobs = submit_task_groups(
            self,
            self._task_groups(),
            self.ctx.student,
            seed_of=lambda index: derive_seed(self.inputs.seed.value, 'round_md', round_, index),
            label_of=lambda index: f'round_{round_:02d}_md_{index:03d}',
            key_prefix='round_md_',
            options=self._options('md'),
        )
        jobs['round_test'] = self.submit(
            EvaluateCalculation,
            code=self.inputs.codes['python'],
            model=self.ctx.student,
            reference=self.ctx.test_set,
            metadata={'call_link_label': f'round_{self.ctx.round:02d}_test', 'options': self._options('evaluate')},
        )
        self.report(f'round {round_}: the student explores ({len(jobs) - 1} MD job(s))')
        return ToContext(**jobs)

    def label_with_teacher(self):
        """Record the student's score on the held-out frames; the teacher labels a seeded sample of its frames."""
        test = self.ctx.round_test
        entry = {'round': self.ctx.round, 'training_frames': self.ctx.training_set.n_frames}
        if test.is_finished_ok:
            entry['force_rmse'] = test.outputs.metrics['force_rmse']
            entry['energy_rmse_per_atom'] = test.outputs.metrics['energy_rmse_per_atom']
        self.ctx.round_entry = entry
        explored = explored_frames(self, 'round_md_')
        if explored is None:
            return self._end_rounds("no frames from the student's MD")
        wanted = min(explored.n_frames, self._rounds()['candidates'])
        seed = derive_seed(self.inputs.seed.value, 'round_candidates', self.ctx.round)
        indices = sample_indices(explored.n_frames, wanted, seed)
        candidates = subset_dataset(explored, orm.List(indices)) if wanted < explored.n_frames else explored
        inputs = {
            'code': self.inputs.codes['python'],
            'model': self.inputs.teacher,
            'dataset': candidates,
            'metadata': {'call_link_label': f'round_{self.ctx.round:02d}_label', 'options': self._options('evaluate')},
        }
        if 'teacher_head' in self.inputs:
            inputs['model_head'] = self.inputs.teacher_head
        return ToContext(round_label=self.submit(LabelCalculation, **inputs))

    def score_round(self):
        """Stop at the target or on too little improvement; else score the student against the teacher's labels
        of its own frames."""
        if self.ctx.get('rounds_done'):
            return None
        label = self.ctx.round_label
        if not label.is_finished_ok:
            return self._end_rounds("no teacher labels of the student's frames")
        settings = self._rounds()
        log = self.ctx.round_log
        previous = log[-1].get('force_rmse') if log else None
        current = self.ctx.round_entry.get('force_rmse')
        if settings['target'] is not None and current is not None and current <= settings['target']:
            return self._end_rounds(f'force RMSE {current:.4f} eV/Å at or below the target {settings["target"]}')
        if previous and current is not None and (previous - current) / previous < settings['min_improvement']:
            return self._end_rounds(
                f'force RMSE {previous:.4f} → {current:.4f} eV/Å: improved less than {settings["min_improvement"]:.0%}'
            )
        node = self.submit(
            EvaluateCalculation,
            code=self.inputs.codes['python'],
            model=self.ctx.student,
            reference=label.outputs.dataset,
            metadata={
                'call_link_label': f'round_{self.ctx.round:02d}_disagreement',
                'options': self._options('evaluate'),
            },
        )
        return ToContext(round_disagreement=node)

    def add_disagreeing(self):
        """The frames of largest disagreement join the training set (unless the rounds ended)."""
        if self.ctx.get('rounds_done'):
            return None
        node = self.ctx.round_disagreement
        entry = self.ctx.round_entry
        if not node.is_finished_ok:
            return self._end_rounds(f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}')
        errors = node.outputs.errors.get_array('max_force_error')
        count = min(len(errors), self._rounds()['frames'])
        worst = sorted(int(i) for i in np.argsort(errors)[::-1][:count])
        added = subset_dataset(node.inputs.reference, orm.List(worst))  # in the teacher's (whole) type map
        added = with_type_map(added, orm.List(self.ctx.training_set.type_map))
        self.ctx.training_set = merge_datasets(previous=self.ctx.training_set, added=added)
        entry.update(candidates=len(errors), added=count, largest_disagreement=float(errors.max()))
        self.ctx.round_log = [*self.ctx.round_log, entry]
        self.report(
            f'round {self.ctx.round}: student vs held-out teacher frames {entry.get("force_rmse", float("nan")):.4f} '
            f'eV/Å; adding the {count} of {len(errors)} student frames with the largest force error (up to '
            f'{errors.max():.3f} eV/Å), retraining on {self.ctx.training_set.n_frames}'
        )
        return None

    def should_retrain(self):
        return not self.ctx.get('rounds_done')

    def _end_rounds(self, reason: str):
        entry = {**self.ctx.round_entry, 'stopped': reason}
        self.ctx.round_log = [*self.ctx.round_log, entry]
        self.ctx.rounds_done = True
        self.report(f'round {self.ctx.round}: {reason}; the rounds end')
        return None

    def evaluate(self):
        """Student vs the teacher's test labels; student and teacher vs the DFT reference."""
        models = {'student': self.ctx.student, 'teacher': self.inputs.teacher}
        references = {'test_set': self.ctx.test_set, 'reference_set': self.inputs.get('reference_set')}
        jobs = {}
        for label, (model, reference) in EVALUATIONS.items():
            if references[reference] is None:
                continue
            inputs = {
                'code': self.inputs.codes['python'],
                'model': models[model],
                'reference': references[reference],
                'metadata': {'call_link_label': label, 'options': self._options('evaluate')},
            }
            if model == 'teacher' and 'teacher_head' in self.inputs:
                inputs['model_head'] = self.inputs.teacher_head
            jobs[label] = self.submit(EvaluateCalculation, **inputs)
        if 'stability' in self.inputs:
            jobs['stability'] = self._submit_stability()
        self.report(f'evaluating: {", ".join(jobs)}')
        return ToContext(**{f'check_{key}': node for key, node in jobs.items()})

    def should_time(self):
        return 'speed' in self.inputs

    def measure_speed(self):
        """Time teacher and student (and the student before compression) in one job, after the evaluations so that
        they do not share the cores."""
        models = {'student': self.ctx.student, 'teacher': self.inputs.teacher}
        if 'compressed_model' in self.ctx.train.outputs:
            models['student_uncompressed'] = self.ctx.train.outputs.model
        inputs = {
            'code': self.inputs.codes['python'],
            'models': models,
            'structure': self.inputs.structures[sorted(self.inputs.structures)[0]],
            'parameters': orm.Dict({'baseline': 'teacher', **self.inputs.speed.get_dict()}),
            'metadata': {'call_link_label': 'speed', 'options': self._options('speed')},
        }
        if 'teacher_head' in self.inputs:
            inputs['model_heads'] = orm.Dict({'teacher': self.inputs.teacher_head.value})
        node = self.submit(SpeedCalculation, **inputs)
        self.report(f'timing teacher and student side by side: {node.process_label}<{node.pk}>')
        return ToContext(check_speed=node)

    def _submit_stability(self):
        parameters = self.inputs.stability.get_dict()
        parameters.setdefault('temperatures', stability_temperatures(self.inputs.exploration.get_dict()))
        name = next(name for name in sorted(self.inputs.structures) if all(self.inputs.structures[name].pbc))
        inputs = {
            'code': self.inputs.codes['python'],
            'model': self.ctx.student,
            'structure': self.inputs.structures[name],
            'parameters': orm.Dict(parameters),
            'metadata': {'call_link_label': 'stability', 'options': self._options('stability')},
        }
        return self.submit(StabilityCalculation, **inputs)

    def _stability_outcome(self):
        """Attach the stability results; the exit code if the student failed them (or the job failed)."""
        node = self.ctx.get('check_stability')
        if node is None:
            return None
        if 'results' in node.outputs:
            self.out('stability', node.outputs.results)
            for run in node.outputs.results['runs']:
                verdict = 'passed' if run['passed'] else f'FAILED: {run["message"]}'
                self.report(
                    f'stability {run["temperature"]:g} K, {run["n_atoms"]} atoms, {run["simulated_ps"]:g} ps: '
                    f'closest pair {run["min_distance"]:.2f} Å, temperature within '
                    f'{run["temperature_max_excursion"]:.0%}, NVE drift {run["energy_drift"]:.3g} meV/atom/ps; '
                    f'{verdict}'
                )
        if node.is_finished_ok:
            return None
        return self.exit_codes.ERROR_STUDENT_UNSTABLE.format(
            message=f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}'
        )

    def results(self):
        self._attach_outputs()
        nodes, failed = {}, []
        unstable = self._stability_outcome()
        for label in EVALUATIONS:
            node = self.ctx.get(f'check_{label}')
            if node is None:
                continue
            if node.is_finished_ok:
                nodes[label] = node.outputs.metrics
                metrics = node.outputs.metrics
                self.report(
                    f'{label}: force RMSE {metrics["force_rmse"]:.4f} eV/Å, energy RMSE '
                    f'{metrics["energy_rmse_per_atom"] * 1000:.2f} meV/atom on {metrics["n_frames"]} frames'
                )
            else:
                failed.append(f'{label}: {node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}')
        speed = self.ctx.get('check_speed')
        if speed is not None and speed.is_finished_ok:
            nodes['speed'] = speed.outputs.speed
            result = speed.outputs.speed.get_dict()
            for name in sorted(name for name in result['speedup'] if name.startswith('student')):
                ratios = ', '.join(
                    f'{n} atoms {r:.0f}x' for n, r in zip(result['n_atoms'], result['speedup'][name]) if r is not None
                )
                self.report(f'{name.replace("_", " ")} speed-up per atom-step over the teacher: {ratios}')
        if nodes:
            self.out('metrics', assemble_metrics(**nodes))
        if failed:
            return self.exit_codes.ERROR_EVALUATION_FAILED.format(message='; '.join(failed))
        if unstable is not None:
            return unstable
        if speed is not None and not speed.is_finished_ok:
            return self.exit_codes.ERROR_SPEED_FAILED.format(
                message=f'{speed.process_label}<{speed.pk}> [{speed.exit_status}] {speed.exit_message}'
            )
        return None

    # -- helpers --------------------------------------------------------------------------------------------------

    def _attach_outputs(self):
        """The datasets, the current student and the rounds' log (once, at the end or on a failure)."""
        if self.ctx.get('outputs_attached'):
            return
        self.ctx.outputs_attached = True
        self.out('training_set', self.ctx.training_set)
        self.out('test_set', self.ctx.test_set)
        node = self.ctx.get('student_train')
        if node is not None:
            self.out('model', self.ctx.student)
            self.out('checkpoint', node.outputs.checkpoint)
            if 'compressed_model' in node.outputs:
                self.out('uncompressed_model', node.outputs.model)
        if self.ctx.get('round_log'):
            self.out('rounds', assemble_rounds(orm.List(self.ctx.round_log)))

    def _options(self, kind: str) -> dict:
        return dict(self.inputs.options.get(kind, {})) if 'options' in self.inputs else {}


def distill_preset(protocol: str | None = None, overrides: dict | None = None, student: str | None = None) -> dict:
    """The preset ``protocol`` of ``protocols/distill.yaml`` with the ``student`` template (default: the file's
    ``default_student``) merged into its ``student`` input.json, then ``overrides`` merged over it all. The preset's
    ``zbl`` is dropped for a student without a type embedding, unless ``overrides`` ask for it."""
    from aiida_quantumespresso.workflows.protocols.utils import recursive_merge

    preset = get_protocol('distill', protocol)
    preset['student'] = recursive_merge(
        student_template(student or load_protocols('distill')['default_student']), preset['student']
    )
    preset = recursive_merge(preset, overrides or {})
    descriptor = preset['student']['model']['descriptor'].get('type')
    if descriptor not in MIXED_TYPE_DESCRIPTORS and 'zbl' not in (overrides or {}):
        preset.pop('zbl', None)
    return preset


def preset_inputs(preset: dict) -> dict:
    """The inputs that a :func:`distill_preset` fills: ``exploration``, ``n_frames``, ``test_fraction``, ``student``
    and, where the preset has them, ``speed``, ``stability`` and ``zbl``."""
    inputs = {
        'exploration': orm.Dict(preset['exploration']),
        'n_frames': orm.Int(preset['n_frames']),
        'test_fraction': orm.Float(preset['test_fraction']),
        'student': orm.Dict(preset['student']),
    }
    for key in ('speed', 'stability', 'zbl'):
        if preset.get(key) is not None:
            inputs[key] = orm.Dict(preset[key])
    return inputs
