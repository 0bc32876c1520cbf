"""``pfd.pfd`` ends with each of its exit codes for real, and every DFT frame labelled so far is still an output.

The cases share one profile with caching on for pw.x and our jobs, so each run re-uses the DFT labels, trainings and MD
of the runs before it and pays only for the step it breaks: caching under test too.
"""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching
from aiida.plugins import CalculationFactory, WorkflowFactory

from aiida_pfd.testing.workflows import TINY_DISTILL, tiny_overrides, tiny_si_builder
from aiida_pfd.workflows.labelling.quantumespresso import QuantumEspressoAdaptor

EvaluateCalculation = CalculationFactory('pfd.evaluate')
PFDWorkChain = WorkflowFactory('pfd.pfd')


def iteration_dft_crashes(monkeypatch):
    """Every DFT job of iteration 1 aborts (pw.x: too few bands): fewer than half of the labels succeed."""
    original = QuantumEspressoAdaptor.get_inputs.__func__

    def crash(cls, caller, structure, label):
        inputs = original(cls, caller, structure, label)
        if label.startswith('dft_01_'):
            parameters = inputs.pw.parameters.get_dict()
            parameters['SYSTEM']['nbnd'] = 2
            inputs.pw.parameters = orm.Dict(parameters)
            inputs.max_iterations = orm.Int(1)
        return inputs

    monkeypatch.setattr(QuantumEspressoAdaptor, 'get_inputs', classmethod(crash))


def final_evaluation_fails(monkeypatch):
    """The evaluation of the final model on the held-out frames exits before it runs."""
    original = PFDWorkChain._submit_evaluation

    def fail(self, reference, label, model=None, head=None):
        if label == 'evaluate_final':
            options = {**self._options('evaluate'), 'prepend_text': 'exit 3'}
            inputs = {'code': self.inputs.codes['python'], 'model': self.ctx.model, 'reference': reference}
            inputs['metadata'] = {'call_link_label': label, 'options': options}
            return self.submit(EvaluateCalculation, **inputs)
        return original(self, reference, label, model=model, head=head)

    monkeypatch.setattr(PFDWorkChain, '_submit_evaluation', fail)


def job_fails(kind: str):
    """The jobs of one kind (``train``, ``md``, ``evaluate``) exit at once: their script never starts."""

    def change(builder):
        builder.options = orm.Dict({kind: {'prepend_text': 'exit 1'}})

    return change


def no_candidate(builder):
    """Every explored frame has atoms closer than 10 Å: all unphysical, none selected."""
    builder.selection = orm.Dict({**builder.selection.get_dict(), 'min_distance': 10.0})


def student_training_fails(builder):
    builder.distill.options = orm.Dict({'train': {'prepend_text': 'exit 1'}})


CASES = {
    'ERROR_NOT_CONVERGED': {},
    'ERROR_DFT_FAILURES': {'patch': iteration_dft_crashes},
    'ERROR_NO_CANDIDATES': {'change': no_candidate},
    'ERROR_TRAINING_FAILED': {'change': job_fails('train')},
    'ERROR_EXPLORATION_FAILED': {'change': job_fails('md')},
    'ERROR_EVALUATION_FAILED': {'change': job_fails('evaluate')},
    'ERROR_DISTILLATION_FAILED': {'distill': True, 'change': student_training_fails},
    'ERROR_FINAL_EVALUATION_FAILED': {'patch': final_evaluation_fails},
}


def test_every_exit_code_is_covered():
    failures = {label for label, code in PFDWorkChain.exit_codes.items() if code.status >= 100}
    assert set(CASES) == failures


@pytest.fixture
def pfd_builder(aiida_profile, pw_code, python_code, dp_code, pseudo_family, multitask_checkpoint):
    def make(distill: bool = False):
        codes = {'pw': pw_code, 'python': python_code, 'dp': dp_code}
        overrides = tiny_overrides(max_iterations=1)
        return tiny_si_builder(codes, multitask_checkpoint, overrides, distill=TINY_DISTILL if distill else None)

    return make


def successful_dft(node) -> set[int]:
    """The PwCalculations the run called (through its PwBaseWorkChains) that finished well, cached ones included."""
    return {
        child.pk for child in node.called_descendants if child.process_label == 'PwCalculation' and child.is_finished_ok
    }


@pytest.mark.slow
@pytest.mark.needs_pw
@pytest.mark.parametrize('exit_code', list(CASES))
def test_every_exit_code_keeps_the_dft_frames(pfd_builder, monkeypatch, exit_code):
    case = CASES[exit_code]
    builder = pfd_builder(distill=case.get('distill', False))
    if 'change' in case:
        case['change'](builder)
    if 'patch' in case:
        case['patch'](monkeypatch)

    with (
        enable_caching(identifier='aiida.calculations:quantumespresso.pw'),
        enable_caching(identifier='aiida.calculations:pfd.*'),
    ):
        results, node = run_get_node(builder)

    assert node.exit_status == PFDWorkChain.exit_codes[exit_code].status, node.exit_message
    # Every DFT frame labelled is in the ledger, with a role, and leads back to its pw.x run.
    ledger = results['dft_frames']
    labelled = successful_dft(node)
    assert ledger.n_frames == len(labelled) >= 3
    assert len(ledger.base.attributes.get('frame_roles')) == ledger.n_frames
    assert 'history' in results and results['history']['initial']['dft_labelled'] == 3
    if exit_code != 'ERROR_NOT_CONVERGED':
        assert results['history']['failures'] or exit_code == 'ERROR_NO_CANDIDATES'


@pytest.mark.slow
@pytest.mark.needs_pw
def test_an_identical_rerun_takes_its_dft_and_trainings_from_the_cache(pfd_builder):
    """Run the same PFD run twice with caching on: the second one runs no pw.x, no training, no MD of its own."""
    with (
        enable_caching(identifier='aiida.calculations:quantumespresso.pw'),
        enable_caching(identifier='aiida.calculations:pfd.*'),
    ):
        first = run_get_node(pfd_builder())[1]
        results, second = run_get_node(pfd_builder())

    assert first.exit_status == second.exit_status == PFDWorkChain.exit_codes.ERROR_NOT_CONVERGED.status
    jobs = [child for child in second.called_descendants if isinstance(child, orm.CalcJobNode)]
    kinds = {job.process_label for job in jobs}
    assert {'PwCalculation', 'DeepmdTrainCalculation', 'AseMdCalculation', 'EvaluateCalculation'} <= kinds
    assert all(job.base.caching.get_cache_source() is not None for job in jobs), [
        job.process_label for job in jobs if job.base.caching.get_cache_source() is None
    ]
    # The same DFT labels: the ledger's frames are equal, frame by frame.
    assert results['dft_frames'].base.caching.get_hash() == first.outputs.dft_frames.base.caching.get_hash()
