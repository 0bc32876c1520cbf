"""Tiny PFD settings for workflow tests: pw.x at 14 Ry on 2-atom Si, 10 DeePMD steps, 20 MD steps."""

from __future__ import annotations

#: aiida-quantumespresso overrides for the DFT labels: cheap, still a real SCF.
TINY_DFT = {'pw': {'parameters': {'SYSTEM': {'ecutwfc': 14.0, 'ecutrho': 112.0}}}, 'kpoints_distance': 0.6}


def tiny_overrides(max_iterations: int = 2, error_band=(0.0, 50.0)) -> dict:
    """``PFDWorkChain.get_builder_from_protocol`` overrides: 3 initial frames, one 20-step NVT task group, at most 3
    frames per iteration, 10 training steps, a target no model reaches (the loop runs ``max_iterations``)."""
    return {
        'perturbation': {'frames': 3},
        'test_fraction': 0.3,  # one frame of each batch of 2-3 held out
        'exploration': {
            'stages': [[{'ensemble': 'nvt', 'temperatures': [600], 'nsteps': 20, 'timestep': 2.0, 'sample_every': 5}]]
        },
        'selection': {'max_frames': 3, 'min_distance': 1.2, 'error_band': list(error_band)},
        'training': {
            'init_from': 'previous',
            'old_data_fraction': 0.5,
            'parameters': {'deepmd': {'training': {'numb_steps': 10, 'disp_freq': 5, 'save_freq': 10}}},
        },
        # Unreachable on purpose: the loop must run all iterations and end with ERROR_NOT_CONVERGED, outputs kept.
        'convergence': {'force_rmse': 1e-6, 'energy_rmse': 1e-9, 'max_iterations': max_iterations},
    }


#: ``distill`` of ``get_builder_from_protocol``: 8 teacher frames, a 10-step student, timing at 2 and 16 atoms.
TINY_DISTILL = {
    'protocol': 'fast',
    'overrides': {
        'exploration': {
            'stages': [[{'ensemble': 'nvt', 'temperatures': [600], 'nsteps': 16, 'timestep': 2.0, 'sample_every': 2}]]
        },
        'n_frames': 8,
        'test_fraction': 0.25,
        'student': {
            'model': {'descriptor': {'rcut': 4.0, 'neuron': [4, 8], 'axis_neuron': 4}, 'fitting_net': {'neuron': [8]}},
            'training': {'numb_steps': 10, 'disp_freq': 5, 'save_freq': 10},
        },
        'speed': {'sizes': [2, 16], 'steps': 1, 'warmup': 1},
        'stability': None,  # the student's MD test has its own tests (test_distill.py)
    },
}


def tiny_si_builder(codes: dict, foundation, overrides: dict | None = None, dft: dict | None = None, distill=None):
    """A ``PFDWorkChain`` builder for 2-atom Si with the tiny multi-task foundation's ``EMT_Cu`` branch (``fast``
    preset with ``overrides``, default :func:`tiny_overrides`; ``dft`` default :data:`TINY_DFT`)."""
    from aiida import orm
    from aiida.plugins import WorkflowFactory
    from ase.build import bulk

    return WorkflowFactory('pfd.pfd').get_builder_from_protocol(
        codes=codes,
        structures={'si': orm.StructureData(ase=bulk('Si', 'diamond', a=5.43))},
        foundation_model=foundation,
        protocol='fast',
        overrides=overrides or tiny_overrides(),
        model_branch='EMT_Cu',
        dft_overrides=dft or TINY_DFT,
        distill=distill,
    )
