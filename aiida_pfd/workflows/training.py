"""``pfd.deepmd.train.base``, ``pfd.sevenn.train.base``: a training job, restarted once with a lower learning rate
when its loss diverges (NaN or infinite), as aiida-quantumespresso's ``PwBaseWorkChain`` restarts pw.x."""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_
from aiida.plugins import CalculationFactory

from ..backends import get_backend

#: The factor on the learning rate of the one restart after a diverged loss, unless one is given.
DEFAULT_LEARNING_RATE_FACTOR = 0.1


def check_learning_rate_factor(factor) -> str | None:
    """What is wrong with a learning-rate factor for the restart after a diverged loss, or None."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0.0 < factor < 1.0:
        return 'give the factor in (0, 1) by which a training whose loss diverged is run once more, e.g. 0.1.'
    return None


def validate_learning_rate_factor(value, _=None) -> str | None:
    problem = check_learning_rate_factor(value.value)
    return f'learning_rate_factor: {problem}' if problem else None


class TrainingBaseWorkChain(BaseRestartWorkChain):
    """Run a model family's training job; when its loss diverges, run it once more at ``learning_rate_factor`` times
    the learning rate (and give up with exit 410 if it diverges again)."""

    _process_class = None
    _backend_name: str = ''

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(cls._process_class, namespace='train')
        spec.input(
            'learning_rate_factor',
            valid_type=orm.Float,
            default=lambda: orm.Float(DEFAULT_LEARNING_RATE_FACTOR),
            validator=validate_learning_rate_factor,
            help='Factor on the learning rate of the one restart after a diverged (NaN or infinite) loss.',
        )
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )
        spec.expose_outputs(cls._process_class)
        spec.exit_code(
            410,
            'ERROR_LOSS_DIVERGED_AGAIN',
            message='The loss diverged again after the learning rate was lowered from {before:g} to {after:g}.',
        )

    def setup(self):
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(self._process_class, 'train'))
        self.ctx.learning_rates = []  # [before, after] of the restart, if any

    @process_handler(priority=500)
    def handle_non_finite_loss(self, node):
        """A diverged loss: lower the learning rate once and train again from the same start."""
        if node.exit_status != self._process_class.exit_codes.ERROR_NON_FINITE_LOSS.status:
            return None
        if self.ctx.learning_rates:
            before, after = self.ctx.learning_rates
            self.report(f'{node.process_label}<{node.pk}>: the loss diverged again at learning rate {after:g}')
            return ProcessHandlerReport(
                True, self.exit_codes.ERROR_LOSS_DIVERGED_AGAIN.format(before=before, after=after)
            )
        backend = get_backend(self._backend_name)
        parameters = self.ctx.inputs.parameters.get_dict() if 'parameters' in self.ctx.inputs else {}
        parameters, before, after = backend.with_scaled_learning_rate(
            parameters, self.inputs.learning_rate_factor.value
        )
        self.ctx.inputs.parameters = orm.Dict(parameters)
        self.ctx.learning_rates = [before, after]
        self.report(
            f'{node.process_label}<{node.pk}>: {node.exit_message}; restarting once with the learning rate lowered '
            f'from {before:g} to {after:g}'
        )
        return ProcessHandlerReport(True)


class DeepmdTrainWorkChain(TrainingBaseWorkChain):
    """``pfd.deepmd.train`` restarted once with a lower ``learning_rate.start_lr`` (and ``stop_lr``) on divergence."""

    _process_class = CalculationFactory('pfd.deepmd.train')
    _backend_name = 'deepmd'


class SevennTrainWorkChain(TrainingBaseWorkChain):
    """``pfd.sevenn.train`` restarted once with a lower ``train.optim_param.lr`` on divergence."""

    _process_class = CalculationFactory('pfd.sevenn.train')
    _backend_name = 'sevenn'
