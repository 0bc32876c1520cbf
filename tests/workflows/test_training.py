"""``pfd.deepmd.train.base``: a training whose loss diverges is restarted once at a lower learning rate."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory

from aiida_pfd.backends import get_backend
from aiida_pfd.data import LabeledDataset
from aiida_pfd.testing.models import emt_frames

DeepmdTrainWorkChain = WorkflowFactory('pfd.deepmd.train.base')


def rounded(value):
    """``value`` with every float rounded to 10 significant digits, nested dictionaries included."""
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    return float(f'{value:.10g}') if isinstance(value, float) else value


@pytest.mark.parametrize(
    ('backend', 'parameters', 'expected'),
    [
        # DeePMD: the start and the final rate scale together; other sections are kept.
        (
            'deepmd',
            {'learning_rate': {'start_lr': 1e-3, 'stop_lr': 1e-5}, 'training': {'numb_steps': 5}},
            {'learning_rate': {'start_lr': 1e-4, 'stop_lr': 1e-6}, 'training': {'numb_steps': 5}},
        ),
        ('deepmd', {}, {'learning_rate': {'start_lr': 1e-4}}),  # DeePMD-kit's default rate, 1e-3
        ('sevenn', {'train': {'epoch': 3}}, {'train': {'epoch': 3, 'optim_param': {'lr': 4e-4}}}),  # sevenn's 0.004
    ],
)
def test_learning_rate_is_scaled_where_the_family_keeps_it(backend, parameters, expected):
    scaled, before, after = get_backend(backend).with_scaled_learning_rate(parameters, 0.1)
    assert rounded(scaled) == rounded(expected)
    assert after == pytest.approx(0.1 * before)
    assert parameters != scaled or not parameters  # the input is not changed in place


def test_a_loss_that_diverges_twice_stops_with_its_exit_code(aiida_profile_clean, dp_code, multitask_checkpoint):
    """The tiny DPA-3 foundation fine-tuned at a learning rate of 1e6 reaches a NaN loss in two steps; halved, it
    still does: one restart, then exit 410, both jobs kept."""
    training_set = LabeledDataset.from_ase(emt_frames('Cu', 3, seed=1), type_map=['Cu']).store()
    train = get_backend('deepmd').finetune_inputs(
        code=dp_code,
        foundation=multitask_checkpoint,
        training_set=training_set,
        parameters={
            'learning_rate': {'start_lr': 1e6, 'stop_lr': 1e5},
            'loss': {'type': 'ener', 'start_pref_e': 0.02, 'limit_pref_e': 1, 'start_pref_f': 1000, 'limit_pref_f': 1},
            'training': {'numb_steps': 4, 'disp_freq': 1, 'save_freq': 4},
        },
        model_branch='EMT_Cu',
    )

    results, node = run_get_node(DeepmdTrainWorkChain, train=train, learning_rate_factor=orm.Float(0.5))

    assert node.exit_status == DeepmdTrainWorkChain.exit_codes.ERROR_LOSS_DIVERGED_AGAIN.status, node.exit_message
    assert 'lowered from 1e+06 to 500000' in node.exit_message
    first, second = sorted(node.called, key=lambda child: child.ctime)
    assert first.exit_status == second.exit_status == 400  # ERROR_NON_FINITE_LOSS, found in DeePMD-kit's own log
    assert second.inputs.parameters['learning_rate'] == pytest.approx({'start_lr': 5e5, 'stop_lr': 5e4})
    assert 'model' not in results
