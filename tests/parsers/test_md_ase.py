"""``pfd.md.ase`` parser on fixture folders holding what the real MD script writes (see ``fixtures/md_ase``).

The folders were produced by running ``python -m aiida_pfd.scripts.md_ase`` with the tiny model on 4-atom Cu cells
(``ok``: two 4-step Langevin tasks at 300 and 600 K sampling every 2 steps; ``unstable``: a 2.45 A bound on cells of
nearest-neighbour distance 3.25 A (``loose``), 2.40 A (``squeezed``) and 2.55 A (``tight``) at 1000 K;
``unstable_no_frames``: the ``squeezed`` cell alone). ``no_frames`` is ``ok`` without ``frames/``, ``bad_thermo`` is
``ok`` with a truncated thermo row, ``script_failed`` holds the real traceback of a run whose model file was missing
(paths shortened).
"""

from __future__ import annotations

import pathlib

import pytest

from aiida_pfd.calculations.md_ase import AseMdCalculation

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'md_ase'
EXIT_CODES = AseMdCalculation.exit_codes


def test_ok(aiida_profile_clean, parse_retrieved, tiny_model):
    results, calcfunction = parse_retrieved('pfd.md.ase', FIXTURES / 'ok', inputs={'model': tiny_model})

    assert calcfunction.is_finished_ok, calcfunction.exit_message
    frames = results['frames']
    assert frames.n_frames == 4 and frames.frames_per_system == [2, 2]
    assert frames.is_labelled and frames.has_virial
    assert frames.type_map == ['Cu', 'Si']
    thermo = results['thermo']
    assert sorted(thermo.get_arraynames()) == ['task_000', 'task_001']
    assert thermo.get_array('task_001').shape == (5, 7)
    assert thermo.get_array('task_001')[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert thermo.base.attributes.get('columns') == [
        'step',
        'time_fs',
        'temperature_K',
        'pressure_bar',
        'epot_eV',
        'etot_eV',
        'volume_A3',
    ]
    tasks = results['tasks']
    assert [task['temperature'] for task in tasks['tasks']] == [300.0, 600.0]
    assert tasks['n_frames'] == 4 and tasks['n_unstable'] == 0


def test_unstable_attaches_the_partial_outputs(aiida_profile_clean, parse_retrieved, tiny_model):
    results, calcfunction = parse_retrieved('pfd.md.ase', FIXTURES / 'unstable', inputs={'model': tiny_model})

    assert calcfunction.exit_status == EXIT_CODES.ERROR_UNSTABLE_TRAJECTORY.status
    assert 'task.002 (tight, 1000.0 K) unstable at step 4' in calcfunction.exit_message
    assert 'task.001 (squeezed, 1000.0 K) unstable at step 0' in calcfunction.exit_message
    # 6 frames of the stable task, 3 of `tight` before step 4, none of `squeezed`.
    assert results['frames'].n_frames == 9 and results['frames'].frames_per_system == [6, 3]
    thermo = results['thermo']
    assert [thermo.get_array(f'task_00{index}').shape for index in range(3)] == [(7, 7), (0, 7), (4, 7)]
    assert [task['status'] for task in results['tasks']['tasks']] == ['ok', 'unstable', 'unstable']


def test_unstable_without_any_frame_is_still_unstable(aiida_profile_clean, parse_retrieved, tiny_model):
    results, calcfunction = parse_retrieved('pfd.md.ase', FIXTURES / 'unstable_no_frames', inputs={'model': tiny_model})

    assert calcfunction.exit_status == EXIT_CODES.ERROR_UNSTABLE_TRAJECTORY.status
    assert 'frames' not in results
    assert results['tasks']['tasks'][0]['unstable_step'] == 0
    assert results['thermo'].get_array('task_000').shape == (0, 7)


@pytest.mark.parametrize(
    ('case', 'exit_code', 'message'),
    [
        ('missing_output', 'ERROR_MISSING_OUTPUT', 'tasks.json not found'),
        ('script_failed', 'ERROR_SCRIPT_FAILED', 'ValueError: The provided filename /nonexistent/frozen.pth'),
        ('no_frames', 'ERROR_NO_FRAMES', '2 tasks, `frames` is empty'),
        ('bad_thermo', 'ERROR_OUTPUT_PARSING', '`thermo/task.001.dat`'),
    ],
)
def test_failures(aiida_profile_clean, parse_retrieved, tiny_model, case, exit_code, message):
    _, calcfunction = parse_retrieved('pfd.md.ase', FIXTURES / case, inputs={'model': tiny_model})

    assert calcfunction.exit_status == EXIT_CODES[exit_code].status
    assert message in calcfunction.exit_message
