"""DFT labels from Quantum ESPRESSO's pw.x, through aiida-quantumespresso's ``PwBaseWorkChain``."""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ProcessBuilder, calcfunction
from aiida_quantumespresso.workflows.protocols.utils import recursive_merge
from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

from ...protocols import get_protocol
from .base import LabellingAdaptor


def get_pw_builder(
    code: orm.AbstractCode,
    structure: orm.StructureData,
    protocol: str | None = None,
    overrides: dict | None = None,
    **kwargs,
) -> ProcessBuilder:
    """Return a ``PwBaseWorkChain`` builder for an SCF calculation with forces and stress, using a PFD preset.

    :param protocol: preset of ``protocols/quantumespresso.yaml`` (``fast``, ``balanced``, ``stringent``).
    :param overrides: overrides in aiida-quantumespresso's format, applied on top of the preset's.
    :param kwargs: passed on to ``PwBaseWorkChain.get_builder_from_protocol`` (``electronic_type``, ``spin_type``...).
    """
    preset = get_protocol('quantumespresso', protocol)
    merged = recursive_merge(preset['overrides'], overrides or {})
    merged = recursive_merge(merged, {'pw': {'parameters': {'CONTROL': {'tprnfor': True, 'tstress': True}}}})
    return PwBaseWorkChain.get_builder_from_protocol(
        code, structure, protocol=preset['base_protocol'], overrides=merged, **kwargs
    )


#: ASE's stress (eV/Å^3) from pw.x's in GPa: ASE uses the opposite sign (stress = -pressure tensor of pw.x).
GPA_TO_EV_PER_A3 = 1.0 / 160.21766208


@calcfunction
def frame_from_pw(structure: orm.StructureData, output_parameters: orm.Dict, output_trajectory: orm.TrajectoryData):
    """One labelled frame from a pw.x run: its free energy (eV), forces (eV/Å) and stress (as virial, eV)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from ...data import LabeledDataset

    if output_parameters.get('energy_units', 'eV') != 'eV':
        raise ValueError(f'energy in {output_parameters["energy_units"]}, expected eV.')
    atoms = structure.get_ase()
    forces = np.asarray(output_trajectory.get_array('forces'))[-1]
    results = {'energy': float(output_parameters['energy']), 'forces': forces}
    if 'stress' in output_trajectory.get_arraynames():
        stress = np.asarray(output_trajectory.get_array('stress'))[-1]
        results['stress'] = -stress * GPA_TO_EV_PER_A3
    atoms.calc = SinglePointCalculator(atoms, **results)
    return LabeledDataset.from_ase([atoms])


class QuantumEspressoAdaptor(LabellingAdaptor):
    """pw.x through ``PwBaseWorkChain`` (its restarts and error handlers included); inputs in namespace ``dft``."""

    namespace = 'dft'
    process_class = PwBaseWorkChain

    @classmethod
    def expose(cls, spec) -> None:
        spec.expose_inputs(
            PwBaseWorkChain,
            namespace=cls.namespace,
            exclude=('pw.structure', 'clean_workdir'),
            namespace_options={
                'required': False,
                'populate_defaults': False,
                'help': 'Inputs of the `PwBaseWorkChain` that labels each frame (all but the structure).',
            },
        )

    @classmethod
    def get_inputs(cls, caller, structure, label: str) -> dict:
        inputs = AttributeDict(caller.exposed_inputs(PwBaseWorkChain, namespace=cls.namespace))
        inputs.pw.structure = structure
        inputs.metadata = {'call_link_label': label}
        return inputs

    @classmethod
    def to_dataset(cls, node):
        return frame_from_pw(node.inputs.pw.structure, node.outputs.output_parameters, node.outputs.output_trajectory)
