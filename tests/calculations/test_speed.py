"""``pfd.speed``: real timed MD with the tiny DeePMD models on fcc Cu supercells, and the input validation.

No assertion compares the speeds of models: only the shape and consistency of the output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_pfd.calculations.speed import SpeedCalculation, resolve_parameters
from aiida_pfd.scripts.speed import repetitions

#: One thread per operator pool: the models are tiny, threads only add overhead.
THREADS = {'OMP_NUM_THREADS': '1', 'DP_INTRA_OP_PARALLELISM_THREADS': '1', 'DP_INTER_OP_PARALLELISM_THREADS': '1'}


def cu(a: float = 3.6) -> orm.StructureData:
    """The 4-atom cubic fcc Cu cell."""
    return orm.StructureData(ase=bulk('Cu', 'fcc', a=a, cubic=True))


def speed_builder(code, models: dict, structure=None, heads: dict | None = None, **parameters):
    builder = SpeedCalculation.get_builder()
    builder.code = code
    builder.models = models
    builder.structure = structure or cu()
    if heads is not None:
        builder.model_heads = orm.Dict(heads)
    builder.parameters = orm.Dict(parameters)
    builder.metadata.options.environment_variables = THREADS
    return builder


def positive(values) -> bool:
    return all(isinstance(value, float) and math.isfinite(value) and value > 0 for value in values)


def test_teacher_and_student_side_by_side(aiida_profile_clean, python_code, tiny_model, multitask_checkpoint):
    builder = speed_builder(
        python_code,
        {'teacher': multitask_checkpoint, 'student': tiny_model},
        heads={'teacher': 'EMT_Cu'},
        sizes=[32, 4],
        steps=3,
        warmup=1,
    )

    results, node = run_get_node(builder)

    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    speed = results['speed'].get_dict()
    assert speed['n_atoms'] == [32, 4]
    assert speed['repetitions'] == [[2, 2, 2], [1, 1, 1]]
    assert speed['baseline'] == 'student'  # the first name in sorted order
    assert sorted(speed['models']) == sorted(speed['speedup']) == ['student', 'teacher']
    for name, model in speed['models'].items():
        assert model['backend'] == 'deepmd'
        assert [len(steps) for steps in model['step_seconds']] == [3, 3]
        assert all(positive(steps) for steps in model['step_seconds'])
        assert positive(model['median_step_seconds']) and positive(model['ms_per_atom_step'])
        assert model['median_step_seconds'] == pytest.approx([np.median(s) for s in model['step_seconds']])
        expected = [m / n * 1000 for m, n in zip(model['median_step_seconds'], speed['n_atoms'])]
        assert model['ms_per_atom_step'] == pytest.approx(expected)
        assert positive(speed['speedup'][name])
    assert speed['speedup']['student'] == [1.0, 1.0]
    student, teacher = speed['models']['student'], speed['models']['teacher']
    ratios = [s / t for s, t in zip(student['ms_per_atom_step'], teacher['ms_per_atom_step'])]
    assert speed['speedup']['teacher'] == pytest.approx(ratios)
    assert speed['steps'] == 3 and speed['warmup'] == 1
    assert isinstance(speed['threads'], int) and speed['threads'] >= 1 and speed['cpu_count'] >= 1
    assert speed['units']['ms_per_atom_step'] == 'ms/(atom step)'
    stdout = node.outputs.retrieved.base.repository.get_object_content('script.out')
    assert 'baseline student' in stdout and 'ms/atom-step' in stdout


def test_max_step_seconds_skips_with_null_entries(aiida_profile_clean, python_code, tiny_model, tiny_checkpoint):
    builder = speed_builder(
        python_code,
        {'frozen': tiny_model, 'checkpoint': tiny_checkpoint},
        sizes=[4, 32],
        steps=2,
        warmup=1,
        baseline='frozen',
        max_step_seconds=1e-9,
    )

    results, node = run_get_node(builder)

    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    speed = results['speed'].get_dict()
    assert speed['n_atoms'] == [4, 32] and speed['baseline'] == 'frozen'
    for name, model in speed['models'].items():
        for key in ('median_step_seconds', 'ms_per_atom_step', 'step_seconds'):
            assert model[key] == [None, None], (name, key)
        assert speed['speedup'][name] == [None, None]
    stdout = node.outputs.retrieved.base.repository.get_object_content('script.out')
    assert 'frozen at 4 atoms: skipped, a step took' in stdout
    assert 'frozen at 32 atoms: skipped (skipped at 4 atoms)' in stdout


def test_defaults():
    resolved = resolve_parameters({}, ['teacher', 'student'])
    assert resolved['baseline'] == 'student'
    assert resolved['sizes'] == [64, 512] and resolved['steps'] == 10 and resolved['warmup'] == 3
    assert resolved['max_step_seconds'] is None
    assert resolve_parameters({'baseline': 'teacher'}, ['teacher', 'student'])['baseline'] == 'teacher'


@pytest.mark.parametrize(
    ('target', 'expected'),
    [(1, (1, 1, 1)), (4, (1, 1, 1)), (32, (2, 2, 2)), (100, (3, 3, 3)), (108, (3, 3, 3)), (500, (5, 5, 5))],
)
def test_repetitions_of_a_cubic_cell(target, expected):
    assert repetitions(bulk('Cu', 'fcc', a=3.6, cubic=True), target) == expected


def test_repetitions_isotropic_in_length_and_only_along_periodic_axes():
    # The primitive fcc cell (1 atom): exactly 4 atoms, the tie between axes broken by the first candidate.
    assert repetitions(bulk('Cu', 'fcc', a=3.6), 4) == (1, 2, 2)
    assert repetitions(bulk('Cu', 'fcc', a=3.6), 512) == (8, 8, 8)
    # A cell twice as long along z is repeated half as often along z.
    long = bulk('Cu', 'fcc', a=3.6, cubic=True).repeat((1, 1, 2))
    assert repetitions(long, 864) == (6, 6, 3)
    slab = bulk('Cu', 'fcc', a=3.6, cubic=True)
    slab.pbc = [True, True, False]
    assert repetitions(slab, 64) == (4, 4, 1)


@pytest.mark.parametrize(
    ('parameters', 'message'),
    [
        ({'sizes': []}, '`sizes` is []: give a non-empty list of target atom counts'),
        ({'sizes': [4, 0]}, '`sizes` is [4, 0]'),
        ({'sizes': [4.5]}, '`sizes` is [4.5]'),
        ({'steps': 0}, '`steps` is 0: give the number of timed MD steps, an integer >= 1'),
        ({'warmup': -1}, '`warmup` is -1: give an integer >= 0'),
        ({'timestep': 0}, '`timestep` is 0: give a number > 0'),
        ({'temperature': -5}, '`temperature` is -5'),
        ({'max_step_seconds': 0}, '`max_step_seconds` is 0: give a number of seconds > 0'),
        ({'nsteps': 10}, "unknown keys ['nsteps']"),
        ({'baseline': 'teacher'}, "`baseline` is 'teacher', which is not one of the `models` ['student']"),
    ],
)
def test_bad_parameters(aiida_profile_clean, python_code, tiny_model, parameters, message):
    with pytest.raises(ValueError) as info:
        run_get_node(speed_builder(python_code, {'student': tiny_model}, **parameters))
    assert message in str(info.value)


def test_at_least_one_model(aiida_profile_clean, python_code):
    with pytest.raises(ValueError, match='`models`: give at least one model'):
        run_get_node(speed_builder(python_code, {}))


def test_elements_in_each_type_map(aiida_profile_clean, python_code, tiny_model):
    aluminium = orm.StructureData(ase=bulk('Al', 'fcc', a=4.05, cubic=True))
    with pytest.raises(ValueError, match=r"type map of `models.student` \['Cu', 'Si'\] lacks the elements \['Al'\]"):
        run_get_node(speed_builder(python_code, {'student': tiny_model}, structure=aluminium))


@pytest.mark.parametrize(
    ('heads', 'message'),
    [
        (None, '`models.teacher` is a multi-task checkpoint: set `model_heads.teacher` to one of its heads'),
        ({'teacher': 'EMT_Zn'}, '`model_heads.teacher` `EMT_Zn` is not a head of `models.teacher`'),
        ({'teacher': 'EMT_Cu', 'student': 'EMT_Cu'}, '`model_heads.student` is `EMT_Cu` but `models.student` has no'),
        ({'teacher': 'EMT_Cu', 'other': 'EMT_Cu'}, "`model_heads` names ['other'], which are not in `models`"),
    ],
)
def test_model_heads(aiida_profile_clean, python_code, tiny_model, multitask_checkpoint, heads, message):
    models = {'teacher': multitask_checkpoint, 'student': tiny_model}
    with pytest.raises(ValueError) as info:
        run_get_node(speed_builder(python_code, models, heads=heads))
    assert message in str(info.value)
