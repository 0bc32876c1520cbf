"""A PFD run in the daemon survives its workers being killed mid-DFT: no finished DFT calculation is recomputed."""

from __future__ import annotations

import os
import pathlib
import signal
import sys
import time

import pytest
from aiida import orm
from aiida.engine import submit
from aiida.plugins import WorkflowFactory
from aiida_quantumespresso.workflows.protocols.utils import recursive_merge

from aiida_pfd.testing.workflows import TINY_DFT, tiny_overrides, tiny_si_builder

PFDWorkChain = WorkflowFactory('pfd.pfd')

#: Each pw.x job sleeps first, so that the kill surely falls while the iteration's DFT jobs run.
SLOW_DFT = recursive_merge(TINY_DFT, {'pw': {'metadata': {'options': {'prepend_text': 'sleep 10'}}}})


def pw_calculations(node) -> list[orm.CalcJobNode]:
    """The PwCalculations the run called through its PwBaseWorkChains."""
    return [child for child in node.called_descendants if child.process_label == 'PwCalculation']


def await_condition(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f'{what}: not after {timeout} s')
        time.sleep(0.5)


@pytest.fixture
def daemon(aiida_config_tmp, aiida_profile_factory, run_aiida_broker_service_for_profile, monkeypatch):
    """A profile of its own with the built-in ZeroMQ broker (the session's test profile has none), and its daemon
    client; the daemon is stopped at the end.

    The daemon is started with the ``verdi`` beside this interpreter, also when the venv is not activated (aiida looks
    ``verdi`` up on the ``PATH`` once, when it is imported).
    """
    from aiida.engine.daemon.client import get_daemon_client

    bin_dir = pathlib.Path(sys.executable).parent
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ.get("PATH", "")}')
    monkeypatch.setattr('aiida.engine.daemon.client.VERDI_BIN', str(bin_dir / 'verdi'))
    with aiida_profile_factory(aiida_config_tmp, broker_backend='core.zeromq') as profile:
        with run_aiida_broker_service_for_profile(profile):
            client = get_daemon_client(profile.name)
            client.start_daemon()
            try:
                yield client
            finally:
                if client.is_daemon_running:
                    client.stop_daemon(wait=True)


@pytest.mark.slow
@pytest.mark.needs_pw
def test_killed_daemon_workers_lose_no_dft(daemon, pw_code, python_code, dp_code, pseudo_family, multitask_checkpoint):
    codes = {'pw': pw_code, 'python': python_code, 'dp': dp_code}
    builder = tiny_si_builder(codes, multitask_checkpoint, tiny_overrides(max_iterations=1), dft=SLOW_DFT)
    node = submit(builder)

    # Wait for the loop's own DFT jobs (iteration 1) to run, the 3 initial ones finished.
    def iteration_dft_running():
        assert not node.is_terminated, node.exit_message
        calculations = pw_calculations(node)
        finished = [calc for calc in calculations if calc.is_finished_ok]
        return len(finished) >= 3 and any(not calc.is_terminated for calc in calculations)

    await_condition(iteration_dft_running, 600, 'the DFT of iteration 1 never ran')
    before = {calc.pk for calc in pw_calculations(node) if calc.is_finished_ok}
    running = {calc.pk for calc in pw_calculations(node) if not calc.is_terminated}

    workers = [int(pid) for pid in daemon.get_worker_info()['info']]
    assert workers
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    daemon.restart_daemon(wait=True)

    await_condition(lambda: node.is_terminated, 900, 'the PFD run did not finish after the restart')
    assert not any(calc.is_excepted for calc in pw_calculations(node))

    assert node.exit_status == PFDWorkChain.exit_codes.ERROR_NOT_CONVERGED.status, node.exit_message
    after = pw_calculations(node)
    # A worker killed while it launched a job may leave that job's node behind, never started (no state, no job id):
    # its PwBaseWorkChain, resumed, launches the job once more. It never ran pw.x.
    ran = [calc for calc in after if calc.process_state is not None]
    never_started = [calc for calc in after if calc.process_state is None]
    assert all(calc.get_job_id() is None and 'retrieved' not in calc.outputs for calc in never_started)
    print(
        f'DFT calculations: {len(before)} finished and {len(running)} running at the kill; after the restart '
        f'{len(ran)} ran in all, {len(never_started)} left unstarted by the killed worker, '
        f'{len(ran) - len({calc.caller.pk for calc in ran})} recomputed'
    )
    # Nothing recomputed: each frame's DFT job (its PwBaseWorkChain) ran pw.x once; the jobs finished before the kill
    # and those running then are the same nodes after it; every one is in the ledger.
    assert len({calc.caller.pk for calc in ran}) == len(ran)
    assert before <= {calc.pk for calc in ran} and running <= {calc.pk for calc in ran}
    assert all(calc.is_finished_ok for calc in ran)
    ledger = node.outputs.dft_frames
    history = node.outputs.history
    assert (
        ledger.n_frames
        == len(ran)
        == history['initial']['dft_labelled'] + sum(entry['dft_labelled'] for entry in history['iterations'])
    )
