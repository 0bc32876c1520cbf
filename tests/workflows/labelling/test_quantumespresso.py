"""DFT labels from pw.x through PwBaseWorkChain, with the codes and family that ``aiida-pfd setup`` registers."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_pfd.protocols import get_protocol
from aiida_pfd.workflows.labelling.quantumespresso import get_pw_builder

#: Below the family's 30/240 Ry so the test stays fast; the physics checked here does not need converged cutoffs.
TEST_CUTOFFS = {'pw': {'parameters': {'SYSTEM': {'ecutwfc': 20.0, 'ecutrho': 160.0}}}}


def test_presets_layer_on_the_quantumespresso_protocols(aiida_profile_clean, localhost, pseudo_family):
    code = orm.InstalledCode(label='pw', computer=localhost, filepath_executable='/usr/bin/pw.x').store()
    structure = orm.StructureData(ase=bulk('Si', 'diamond', a=5.43))
    builder = get_pw_builder(code, structure)
    system = builder.pw.parameters['SYSTEM']
    assert (system['ecutwfc'], system['ecutrho']) == (30.0, 240.0)
    assert (system['smearing'], system['degauss']) == ('cold', 0.01)
    assert builder.kpoints_distance.value == 0.4
    assert builder.pw.parameters['CONTROL']['tprnfor'] and builder.pw.parameters['CONTROL']['tstress']
    with pytest.raises(ValueError, match='unknown protocol'):
        get_protocol('quantumespresso', 'extreme')


@pytest.mark.needs_pw
def test_pw_single_point_gives_restoring_forces_in_ev_per_angstrom(aiida_profile_clean, pw_code, pseudo_family):
    atoms = bulk('Si', 'diamond', a=5.43)
    atoms.positions[1, 0] += 0.05
    builder = get_pw_builder(pw_code, orm.StructureData(ase=atoms), protocol='fast', overrides=TEST_CUTOFFS)

    _, node = run_get_node(builder)

    assert node.is_finished_ok, node.exit_message
    forces = node.outputs.output_trajectory.get_array('forces')[-1]
    assert forces.shape == (2, 3)
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-3)
    # Displacing atom 2 by +0.05 Å along x gives a restoring force of ~0.7 eV/Å (0.027 Ry/bohr): eV/Å, not Ry/bohr.
    assert -1.5 < forces[1, 0] < -0.3
    assert np.abs(forces[:, 1:]).max() < 1e-3
    assert node.outputs.output_parameters['energy_units'] == 'eV'
    assert -300 < node.outputs.output_parameters['energy'] < -250

    stdout = node.called[-1].outputs.retrieved.base.repository.get_object_content('aiida.out')
    ranks = pw_code.computer.get_default_mpiprocs_per_machine()
    assert f'running on {ranks:>5} processors' in stdout or ranks == 1, 'pw.x did not run as one MPI job'

    # frame_from_pw, pinned against pw.x's own output read by ASE: energy, forces, and stress with ASE's sign and
    # units (eV/Å^3; the virial is -stress * volume).
    import io
    import re

    from ase import units
    from ase.io import read

    from aiida_pfd.workflows.labelling.quantumespresso import frame_from_pw

    outputs = node.outputs
    [frame] = frame_from_pw(node.inputs.pw.structure, outputs.output_parameters, outputs.output_trajectory).to_ase()
    expected = read(io.StringIO(stdout), format='espresso-out')
    total = float(re.findall(r'^!\s+total energy\s+=\s+(-?\d+\.\d+) Ry', stdout, flags=re.MULTILINE)[-1])
    assert frame.get_potential_energy() == pytest.approx(total * units.Ry, abs=1e-4)
    np.testing.assert_allclose(frame.get_forces(), expected.get_forces(), atol=1e-4)
    np.testing.assert_allclose(frame.get_stress(voigt=False), expected.get_stress(voigt=False), atol=1e-6)
    assert abs(expected.get_stress()[:3]).max() > 1e-5  # a strained, displaced cell: the sign is tested
