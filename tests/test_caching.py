"""AiiDA caching for PFD: identical CalcJobs (ours and pw.x) are re-used, failed ones never are."""

from __future__ import annotations

import time

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.manage.caching import get_use_cache
from aiida.manage.configuration import get_config
from aiida.plugins import CalculationFactory
from aiida.plugins.entry_point import get_entry_point_names
from ase.build import bulk

from aiida_pfd.caching import (
    CACHED_PROCESSES,
    disable_caching,
    enable_caching,
    ensure_caching,
    invalidate_failed,
    is_caching_enabled,
)
from aiida_pfd.provision import Status

EvaluateCalculation = CalculationFactory('pfd.evaluate')
PwCalculation = CalculationFactory('quantumespresso.pw')
OPTIONS = ('caching.enabled_for', 'caching.disabled_for', 'caching.default_enabled')


@pytest.fixture
def profile_options(aiida_profile):
    """The test profile's caching options, restored after the test."""
    config = get_config()
    profile = config.get_profile(aiida_profile.name)
    saved = {name: profile.options[name] for name in OPTIONS if name in profile.options}
    yield config, aiida_profile.name
    for name in OPTIONS:
        profile.options.pop(name, None)
    profile.options.update(saved)
    config.store()


@pytest.fixture
def caching_on(profile_options):
    """Caching turned on in the test profile as ``aiida-pfd setup --caching`` does it."""
    config, name = profile_options
    enable_caching(name, config)
    return config, name


def test_enable_keeps_other_identifiers_and_accepts_the_wildcard(profile_options):
    config, name = profile_options
    other = 'aiida.calculations:core.arithmetic.add'
    config.set_option('caching.enabled_for', [other], scope=name)
    config.set_option('caching.disabled_for', ['aiida.calculations:quantumespresso.pw'], scope=name)
    assert not is_caching_enabled(name, config)
    assert not get_use_cache(identifier='aiida.calculations:pfd.evaluate')

    assert enable_caching(name, config) == list(CACHED_PROCESSES)
    assert config.get_option('caching.enabled_for', scope=name) == [other, *CACHED_PROCESSES]
    assert config.get_option('caching.disabled_for', scope=name) == []  # would conflict with enabled_for
    assert is_caching_enabled(name, config)
    assert enable_caching(name, config) == []
    for entry_point in get_entry_point_names('aiida.calculations'):  # what the wildcard covers, as AiiDA decides it
        assert get_use_cache(identifier=f'aiida.calculations:{entry_point}') == (
            entry_point.startswith('pfd.') or entry_point in ('quantumespresso.pw', 'core.arithmetic.add')
        ), entry_point
    on_disk = type(config).from_file(config.filepath)
    assert on_disk.get_option('caching.enabled_for', scope=name) == [other, *CACHED_PROCESSES]

    assert disable_caching(name, config) == list(CACHED_PROCESSES)
    assert config.get_option('caching.enabled_for', scope=name) == [other]
    assert not is_caching_enabled(name, config)


def test_the_setup_step_asks_nothing_twice(profile_options):
    config, name = profile_options
    assert ensure_caching(None, name, config).status is Status.SKIPPED
    assert ensure_caching(False, name, config).status is Status.UNCHANGED
    assert ensure_caching(True, name, config).status is Status.CREATED
    assert ensure_caching(True, name, config).status is Status.UNCHANGED
    assert ensure_caching(None, name, config).status is Status.UNCHANGED
    assert ensure_caching(False, name, config).status is Status.CREATED
    assert not is_caching_enabled(name, config)


def test_every_failure_of_our_calcjobs_invalidates_the_cache():
    entry_points = [name for name in get_entry_point_names('aiida.calculations') if name.startswith('pfd.')]
    assert len(entry_points) >= 8
    for entry_point in entry_points:
        for label, exit_code in CalculationFactory(entry_point).spec().exit_codes.items():
            if exit_code.status >= 300:
                assert exit_code.invalidates_cache, f'{entry_point} {exit_code.status} {label}'


def run_timed(process, **inputs):
    start = time.perf_counter()
    _, node = run_get_node(process, **inputs)
    return node, time.perf_counter() - start


def test_an_identical_evaluation_is_taken_from_the_cache(
    aiida_profile_clean, caching_on, python_code, tiny_model, emt_dataset
):
    inputs = {'code': python_code, 'model': tiny_model, 'reference': emt_dataset}
    first, first_seconds = run_timed(EvaluateCalculation, **inputs)
    second, second_seconds = run_timed(EvaluateCalculation, **inputs)
    print(f'pfd.evaluate: {first_seconds:.2f} s run, {second_seconds:.2f} s from the cache')

    assert first.is_finished_ok, first.exit_message
    assert not first.base.caching.is_created_from_cache
    assert second.is_finished_ok and second.base.caching.get_cache_source() == first.uuid
    assert set(second.outputs) == set(first.outputs)
    assert second.outputs.metrics.get_dict() == first.outputs.metrics.get_dict()
    for name in first.outputs.errors.get_arraynames():
        np.testing.assert_array_equal(second.outputs.errors.get_array(name), first.outputs.errors.get_array(name))


def test_a_failed_evaluation_is_not_reused(aiida_profile_clean, caching_on, python_code, tiny_model, emt_dataset):
    inputs = {'code': python_code, 'model': tiny_model, 'reference': emt_dataset}
    inputs['metadata'] = {'options': {'prepend_text': 'exit 3'}}  # the job stops before the script runs
    first, _ = run_timed(EvaluateCalculation, **inputs)
    second, _ = run_timed(EvaluateCalculation, **inputs)

    assert first.exit_status >= 300, first.exit_status
    assert EvaluateCalculation.spec().exit_codes(first.exit_status).invalidates_cache
    assert first.base.caching.get_hash() == second.base.caching.get_hash()  # identical, yet ...
    assert second.base.caching.get_cache_source() is None  # ... run again
    assert second.exit_status == first.exit_status


def pw_inputs(pw_code, pseudo_family, **electrons) -> dict:
    """A cheap 2-atom Si SCF (ecutwfc 14 Ry, 2x2x2 k-points) on one MPI rank."""
    structure = orm.StructureData(ase=bulk('Si', 'diamond', a=5.43))
    parameters = {
        'CONTROL': {'calculation': 'scf', 'tprnfor': True},
        'SYSTEM': {'ecutwfc': 14.0, 'ecutrho': 112.0},
        'ELECTRONS': {'conv_thr': 1e-6, **electrons},
    }
    kpoints = orm.KpointsData()
    kpoints.set_kpoints_mesh([2, 2, 2])
    return {
        'code': pw_code,
        'structure': structure,
        'pseudos': pseudo_family.get_pseudos(structure=structure),
        'parameters': orm.Dict(parameters),
        'kpoints': kpoints,
        'metadata': {'options': {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}},
    }


@pytest.mark.needs_pw
def test_an_identical_pw_run_is_taken_from_the_cache(aiida_profile_clean, caching_on, pw_code, pseudo_family):
    inputs = pw_inputs(pw_code, pseudo_family)
    first, first_seconds = run_timed(PwCalculation, **inputs)
    second, second_seconds = run_timed(PwCalculation, **inputs)
    print(f'pw.x: {first_seconds:.2f} s run, {second_seconds:.2f} s from the cache')

    assert first.is_finished_ok, first.exit_message
    assert second.base.caching.get_cache_source() == first.uuid
    assert second.outputs.output_parameters['energy'] == first.outputs.output_parameters['energy']
    np.testing.assert_array_equal(
        second.outputs.output_trajectory.get_array('forces'), first.outputs.output_trajectory.get_array('forces')
    )
    assert invalidate_failed(first) == []  # a successful run stays a cache source


@pytest.mark.needs_pw
def test_a_failed_pw_run_is_reused_unless_invalidated(aiida_profile_clean, caching_on, pw_code, pseudo_family):
    inputs = pw_inputs(pw_code, pseudo_family, electron_maxstep=1, conv_thr=1e-12)  # the SCF cannot converge
    first, _ = run_timed(PwCalculation, **inputs)
    assert first.exit_status == PwCalculation.exit_codes.ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED.status

    # aiida-quantumespresso invalidates the cache only for exit codes below 400: this failure is copied ...
    copy, _ = run_timed(PwCalculation, **inputs)
    assert copy.base.caching.get_cache_source() == first.uuid, 'pw.x 410 invalidates the cache by itself now'

    # ... unless the workflow marks its failed DFT nodes.
    assert set(invalidate_failed(first) + invalidate_failed(copy)) == {first, copy}
    assert invalidate_failed(first) == []
    again, _ = run_timed(PwCalculation, **inputs)
    assert again.base.caching.get_cache_source() is None
    assert again.exit_status == first.exit_status
