"""``pfd.dataset``: frames (optionally labelled with energy, forces and virial) stored as deepmd/npy systems.

The node repository holds one deepmd/npy system per group of frames with the same atoms in the same order
(``systems/sys.000``, ``systems/sys.001``...), so that a frame's atom order survives a round trip. Frames are numbered
system by system, in that order; :meth:`LabeledDataset.to_ase` returns them in that order.
Conversion goes through dpdata and ASE.
"""

from __future__ import annotations

import io
import itertools
import pathlib
import tempfile
import typing as t

import numpy as np
from aiida import orm

if t.TYPE_CHECKING:
    import dpdata
    from ase import Atoms

SYSTEMS_DIR = 'systems'


def natural_key(name: str) -> list:
    """Sort key that orders ``s2`` before ``s10`` (and ``sys.2`` before ``sys.10``)."""
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', str(name))]


def npy_system_dirs(directory: str | pathlib.Path) -> list[pathlib.Path]:
    """The deepmd/npy system folders (those holding ``type.raw``) under ``directory``, in natural order.

    Natural order keeps the frame numbering of datasets with more than a thousand systems.
    """
    return sorted({path.parent for path in pathlib.Path(directory).rglob('type.raw')}, key=natural_key)


def _is_labelled(atoms: Atoms) -> bool:
    return atoms.calc is not None and 'energy' in atoms.calc.results and 'forces' in atoms.calc.results


def _has_virial(atoms: Atoms) -> bool:
    return 'virial' in atoms.info or (atoms.calc is not None and 'stress' in atoms.calc.results)


def _frame_key(atoms: Atoms) -> tuple:
    return (tuple(atoms.get_chemical_symbols()), bool(atoms.pbc.any()), _is_labelled(atoms), _has_virial(atoms))


def systems_from_ase(frames: t.Iterable[Atoms]) -> list[dpdata.System]:
    """Group ``frames`` into dpdata systems of identical atom sequences (first appearance order), keeping labels."""
    import dpdata

    groups: dict[tuple, list[Atoms]] = {}
    for atoms in frames:
        groups.setdefault(_frame_key(atoms), []).append(atoms)

    systems = []
    for (_, _, labelled, _), members in groups.items():
        cls = dpdata.LabeledSystem if labelled else dpdata.System
        system = cls(members[0], fmt='ase/structure')
        for atoms in members[1:]:
            system.append(cls(atoms, fmt='ase/structure'))
        systems.append(system)
    return systems


def system_order(frames: t.Sequence[Atoms]) -> list[int]:
    """Indices of ``frames`` in the order :func:`systems_from_ase` stores them (system by system)."""
    groups: dict[tuple, list[int]] = {}
    for index, atoms in enumerate(frames):
        groups.setdefault(_frame_key(atoms), []).append(index)
    return [index for members in groups.values() for index in members]


def _present_elements(systems: t.Sequence[dpdata.System]) -> list[str]:
    """Elements with at least one atom in ``systems``, in order of first appearance."""
    present = []
    for system in systems:
        for name, count in zip(system['atom_names'], system['atom_numbs']):
            if count and name not in present:
                present.append(name)
    return present


def _type_map_of(systems: t.Sequence[dpdata.System], type_map: t.Sequence[str] | None) -> list[str]:
    """``type_map`` checked to cover every element present, or the sorted present elements if it is None."""
    present = _present_elements(systems)
    if type_map is None:
        return sorted(present)
    missing = [name for name in present if name not in type_map]
    if missing:
        raise ValueError(f'type_map {list(type_map)} lacks the elements {missing} present in the frames.')
    return list(type_map)


def _formula(system: dpdata.System) -> str:
    """Hill formula of one frame of ``system`` (e.g. ``AlCu3``)."""
    from ase.formula import Formula

    counts = {name: int(count) for name, count in zip(system['atom_names'], system['atom_numbs']) if count}
    return Formula.from_dict(counts).format('hill')


class LabeledDataset(orm.Data):
    """Frames stored as deepmd/npy systems in the repository, with queryable attributes.

    Attributes: ``n_frames``, ``n_systems``, ``type_map``, ``elements``, ``n_atoms`` (per system), ``formulae`` (per
    system), ``frames_per_system``, ``has_energy``, ``has_forces``, ``has_virial``.
    """

    def __init__(self, systems: t.Sequence[dpdata.System] | None = None, type_map: t.Sequence[str] | None = None, **kw):
        super().__init__(**kw)
        if systems is not None:
            self._store_systems(list(systems), type_map)

    # -- constructors -------------------------------------------------------------------------------------------------

    @classmethod
    def from_ase(cls, frames: t.Iterable[Atoms], type_map: t.Sequence[str] | None = None, **kw) -> LabeledDataset:
        """Frames from ASE ``Atoms``; energies, forces and stress (as virial) are taken from their calculators."""
        frames = list(frames)
        if not frames:
            raise ValueError('no frames given.')
        return cls(systems_from_ase(frames), type_map=type_map, **kw)

    @classmethod
    def from_extxyz(cls, source: str | pathlib.Path | t.IO, type_map: t.Sequence[str] | None = None, **kw):
        """Frames of an extended XYZ file (a path or a text stream)."""
        from ase.io import read

        return cls.from_ase(read(source, index=':', format='extxyz'), type_map=type_map, **kw)

    @classmethod
    def from_dpdata(cls, data, type_map: t.Sequence[str] | None = None, **kw) -> LabeledDataset:
        """Frames of a dpdata ``System``/``LabeledSystem``, a ``MultiSystems``, or a list of systems."""
        import dpdata

        if isinstance(data, dpdata.MultiSystems):
            systems = list(data.systems.values())
        elif isinstance(data, dpdata.System):
            systems = [data]
        else:
            systems = list(data)
        return cls(systems, type_map=type_map, **kw)

    @classmethod
    def from_deepmd_npy(cls, directory: str | pathlib.Path, type_map: t.Sequence[str] | None = None, **kw):
        """Frames of a deepmd/npy system directory, or of a directory of such systems (found by ``type.raw``)."""
        directory = pathlib.Path(directory)
        roots = npy_system_dirs(directory)
        if not roots:
            raise ValueError(f'no deepmd/npy system (a folder with `type.raw`) found under `{directory}`.')
        return cls([_load_npy_system(root) for root in roots], type_map=type_map, **kw)

    @classmethod
    def from_structures(cls, structures: t.Iterable[orm.StructureData], **kw) -> LabeledDataset:
        """Unlabelled frames from ``StructureData`` nodes."""
        return cls.from_ase((structure.get_ase() for structure in structures), **kw)

    @classmethod
    def from_trajectory(cls, trajectory: orm.TrajectoryData, **kw) -> LabeledDataset:
        """Frames of a ``TrajectoryData``, labelled when it carries ``energy`` (or ``energies``) and ``forces``."""
        from ase.calculators.singlepoint import SinglePointCalculator

        names = trajectory.get_arraynames()
        energies = next((trajectory.get_array(n) for n in ('energy', 'energies') if n in names), None)
        forces = trajectory.get_array('forces') if 'forces' in names else None
        frames = []
        for index in range(trajectory.numsteps):
            atoms = trajectory.get_step_structure(index).get_ase()
            if energies is not None and forces is not None:
                atoms.calc = SinglePointCalculator(atoms, energy=float(energies[index]), forces=forces[index])
            frames.append(atoms)
        return cls.from_ase(frames, **kw)

    # -- exporters ----------------------------------------------------------------------------------------------------

    def export_deepmd_npy(self, directory: str | pathlib.Path) -> list[pathlib.Path]:
        """Write the deepmd/npy systems into ``directory``; return the system folders."""
        directory = pathlib.Path(directory).absolute()
        directory.mkdir(parents=True, exist_ok=True)
        self.base.repository.copy_tree(directory, SYSTEMS_DIR)
        return [directory / name for name in self.system_names]

    def to_dpdata(self) -> list[dpdata.System]:
        """Return the systems as dpdata ``LabeledSystem`` (labelled datasets) or ``System`` objects."""
        with tempfile.TemporaryDirectory() as tmp:
            return [_load_npy_system(path) for path in self.export_deepmd_npy(tmp)]

    def to_ase(self) -> list[Atoms]:
        """Return all frames as ASE ``Atoms``; labels are attached as ``SinglePointCalculator`` results."""
        frames = []
        for system in self.to_dpdata():
            frames.extend(system.to('ase/structure'))
        return frames

    def to_extxyz(self, target: str | pathlib.Path | t.IO | None = None) -> str | None:
        """Write the frames as extended XYZ to ``target`` (path or stream); return the text if ``target`` is None."""
        from ase.io import write

        if target is None:
            stream = io.StringIO()
            write(stream, self.to_ase(), format='extxyz')
            return stream.getvalue()
        write(target, self.to_ase(), format='extxyz')
        return None

    # -- attributes ---------------------------------------------------------------------------------------------------

    @property
    def n_frames(self) -> int:
        return self.base.attributes.get('n_frames')

    @property
    def type_map(self) -> list[str]:
        return self.base.attributes.get('type_map')

    @property
    def elements(self) -> list[str]:
        return self.base.attributes.get('elements')

    @property
    def system_names(self) -> list[str]:
        return self.base.attributes.get('system_names')

    @property
    def frames_per_system(self) -> list[int]:
        return self.base.attributes.get('frames_per_system')

    @property
    def has_energy(self) -> bool:
        return self.base.attributes.get('has_energy')

    @property
    def has_forces(self) -> bool:
        return self.base.attributes.get('has_forces')

    @property
    def has_virial(self) -> bool:
        return self.base.attributes.get('has_virial')

    @property
    def is_labelled(self) -> bool:
        return self.has_energy and self.has_forces

    def __str__(self) -> str:
        return f'{super().__str__()} [{self.n_frames} frames, {", ".join(self.base.attributes.get("formulae"))}]'

    # -- storage ------------------------------------------------------------------------------------------------------

    def _store_systems(self, systems: list[dpdata.System], type_map: t.Sequence[str] | None) -> None:
        systems = [s for s in systems if s.get_nframes() > 0]
        if not systems:
            raise ValueError('a dataset needs at least one frame.')
        type_map = _type_map_of(systems, type_map)
        labelled = ['energies' in s.data and 'forces' in s.data for s in systems]
        if any(labelled) and not all(labelled):
            raise ValueError('all frames of a dataset must be labelled, or none: split labelled and unlabelled frames.')

        names = [f'sys.{index:03d}' for index in range(len(systems))]
        with tempfile.TemporaryDirectory() as tmp:
            for name, system in zip(names, systems):
                system = system.copy()
                system.sort_atom_names(type_map=type_map)
                system.to('deepmd/npy', str(pathlib.Path(tmp) / name))
            self.base.repository.put_object_from_tree(tmp, SYSTEMS_DIR)

        present = _present_elements(systems)
        self.base.attributes.set_many(
            {
                'n_frames': sum(s.get_nframes() for s in systems),
                'n_systems': len(systems),
                'system_names': names,
                'frames_per_system': [s.get_nframes() for s in systems],
                'type_map': list(type_map),
                'elements': [name for name in type_map if name in present],
                'n_atoms': [s.get_natoms() for s in systems],
                'formulae': [_formula(s) for s in systems],
                'has_energy': all(labelled),
                'has_forces': all(labelled),
                'has_virial': all('virials' in s.data for s in systems),
            }
        )


def _load_npy_system(path: pathlib.Path) -> dpdata.System:
    """Load one deepmd/npy system folder, labelled if it has energies."""
    import dpdata

    labelled = any(path.glob('set.*/energy.npy'))
    cls = dpdata.LabeledSystem if labelled else dpdata.System
    return cls(str(path), fmt='deepmd/npy')


def frame_slices(dataset: LabeledDataset) -> list[tuple[int, int]]:
    """Return the global frame index range ``[start, stop)`` of each system of ``dataset``."""
    bounds = np.cumsum([0, *dataset.frames_per_system])
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
