"""DFT labels from Quantum ESPRESSO's pw.x, through aiida-quantumespresso's ``PwBaseWorkChain``."""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ProcessBuilder, calcfunction
from aiida_quantumespresso.workflows.protocols.utils import recursive_merge
from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain
from ase import units

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
    try:
        return PwBaseWorkChain.get_builder_from_protocol(
            code, structure, protocol=preset['base_protocol'], overrides=merged, **kwargs
        )
    except ValueError as exception:
        if 'does not contain pseudo for element' not in str(exception):
            raise
        raise ValueError(
            f'pseudo_family: {exception}; give `pseudo_family` in the DFT overrides, a family that covers every '
            'element (`aiida-pseudo list` shows those installed; `aiida-pseudo install sssp` installs one)'
        ) from exception


def all_kinds_structure(structures: dict) -> orm.StructureData:
    """One structure holding one atom of every kind of ``structures`` (``{name: StructureData}``), far apart: what a
    pw.x builder is made from so that its pseudopotentials cover every structure and its cutoffs are the highest any
    element of the run recommends (one cutoff for all frames keeps their energies on one scale)."""
    kinds = {}
    for structure in structures.values():
        for kind in structure.kinds:
            kinds.setdefault(kind.name, kind)
    union = orm.StructureData(cell=[[4.0 * len(kinds), 0, 0], [0, 8.0, 0], [0, 0, 8.0]])
    for index, kind in enumerate(kinds.values()):
        union.append_atom(position=(4.0 * index, 0.0, 0.0), symbols=kind.symbols, weights=kind.weights, name=kind.name)
    return union


def pseudos_for(structure: orm.StructureData, pseudos: dict) -> dict:
    """The pseudopotentials of ``structure``'s kinds, by kind name, else by element (MD frames name kinds by element).

    :raises ValueError: naming the kinds that have none.
    """
    chosen, missing = {}, []
    for kind in structure.kinds:
        pseudo = pseudos.get(kind.name) or next((p for p in pseudos.values() if p.element == kind.symbol), None)
        if pseudo is None:
            missing.append(kind.name)
        chosen[kind.name] = pseudo
    if missing:
        raise ValueError(f'dft.pw.pseudos: no pseudopotential for the kinds {missing}; give one for each.')
    return chosen


#: ASE's stress (eV/Å^3) from pw.x's in GPa: ASE uses the opposite sign (stress = -pressure tensor of pw.x).
GPA_TO_EV_PER_A3 = units.GPa


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
        inputs.pw.pseudos = pseudos_for(structure, inputs.pw.pseudos)
        inputs.metadata = {'call_link_label': label}
        return inputs

    @classmethod
    def check_structures(cls, inputs, structures) -> str | None:
        pseudos = inputs.get('pw', {}).get('pseudos')
        if not pseudos:
            return None
        for name, structure in structures.items():
            try:
                pseudos_for(structure, pseudos)
            except ValueError as exception:
                return f'{exception} (structure `{name}`)'
        return None

    @classmethod
    def to_dataset(cls, node):
        return frame_from_pw(node.inputs.pw.structure, node.outputs.output_parameters, node.outputs.output_trajectory)
