"""``pfd.speed`` parser on fixture folders (``fixtures/speed``).

``ok`` is the output of a real run (``teacher``: the tiny multi-task checkpoint with head ``EMT_Cu``, ``student``: the
tiny frozen model; sizes [32, 4], 3 steps, 1 warm-up step). ``wrong_lengths`` is ``ok`` with one size dropped from
``models.teacher.ms_per_atom_step``, ``missing_key`` is ``ok`` without ``speedup``, ``unparsable`` a truncated
``speed.json``, ``non_finite`` the ``error.json`` of a stop, ``script_failed`` the real traceback of a run whose model
file was missing (paths shortened), ``missing_output`` a run killed after its first line.
"""

from __future__ import annotations

import pathlib

import pytest
from aiida import orm

from aiida_pfd.calculations.speed import SpeedCalculation
from aiida_pfd.data import ModelData

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'speed'
EXIT_CODES = SpeedCalculation.exit_codes


def inputs(model_file, names=('student', 'teacher'), sizes=(32, 4)) -> dict:
    """The inputs the parser reads: the model names and the sizes of ``parameters``."""
    models = {f'models__{name}': ModelData(model_file) for name in names}
    return {**models, 'parameters': orm.Dict({'sizes': list(sizes), 'steps': 3, 'warmup': 1})}


def test_ok(aiida_profile_clean, parse_retrieved, tiny_model_files):
    results, calcfunction = parse_retrieved('pfd.speed', FIXTURES / 'ok', inputs=inputs(tiny_model_files['frozen']))

    assert calcfunction.is_finished_ok, calcfunction.exit_message
    speed = results['speed'].get_dict()
    assert speed['n_atoms'] == [32, 4] and speed['repetitions'] == [[2, 2, 2], [1, 1, 1]]
    assert speed['baseline'] == 'student' and speed['speedup']['student'] == [1.0, 1.0]
    assert [len(steps) for steps in speed['models']['teacher']['step_seconds']] == [3, 3]


@pytest.mark.parametrize(
    ('case', 'names', 'sizes', 'exit_code', 'message'),
    [
        ('missing_output', None, None, 'ERROR_MISSING_OUTPUT', 'speed.json not found; output ends with: student at 4'),
        ('script_failed', None, None, 'ERROR_SCRIPT_FAILED', 'ValueError: The provided filename /scratch/job/model'),
        ('unparsable', None, None, 'ERROR_OUTPUT_PARSING', "speed.json: Expecting ',' delimiter"),
        ('missing_key', None, None, 'ERROR_OUTPUT_PARSING', "speed.json: 'no speedup'"),
        ('wrong_lengths', None, None, 'ERROR_OUTPUT_PARSING', "lists {'models.teacher.ms_per_atom_step': 1}"),
        ('ok', None, (32, 4, 256), 'ERROR_OUTPUT_PARSING', '3 sizes, but the lists'),
        ('ok', ('student',), None, 'ERROR_OUTPUT_PARSING', "are not the inputs ['student']"),
        ('non_finite', None, None, 'ERROR_NON_FINITE_PREDICTIONS', 'model `teacher` gave NaN or infinite energy'),
    ],
)
def test_failures(aiida_profile_clean, parse_retrieved, tiny_model_files, case, names, sizes, exit_code, message):
    linked = inputs(tiny_model_files['frozen'], names or ('student', 'teacher'), sizes or (32, 4))
    results, calcfunction = parse_retrieved('pfd.speed', FIXTURES / case, inputs=linked)

    assert calcfunction.exit_status == EXIT_CODES[exit_code].status
    assert message in calcfunction.exit_message
    assert not results
