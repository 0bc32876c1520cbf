"""Helpers shared by the scripts: reading ``input.json``, datasets and models; reporting a stop to the parser."""

from __future__ import annotations

import itertools
import json
import pathlib
import sys
import typing as t

ERROR_FILE = 'error.json'


class ScriptStop(Exception):
    """A condition the parser turns into an exit code (its label), e.g. ``ERROR_UNSTABLE_TRAJECTORY``."""

    def __init__(self, exit_code: str, message: str):
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message


def read_input(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    path = pathlib.Path(argv[0] if argv else 'input.json')
    return json.loads(path.read_text())


def load_frames(directory: str | pathlib.Path):
    """All frames of a folder of deepmd/npy systems, as ASE ``Atoms`` (labels as ``SinglePointCalculator``)."""
    import dpdata

    from aiida_pfd.data.dataset import npy_system_dirs

    frames = []
    for root in npy_system_dirs(directory):
        labelled = any(root.glob('set.*/energy.npy'))
        system = (dpdata.LabeledSystem if labelled else dpdata.System)(str(root), fmt='deepmd/npy')
        frames.extend(system.to('ase/structure'))
    return frames


def build_atoms(structure: dict):
    """ASE ``Atoms`` from an ``input.json`` structure entry (:func:`aiida_pfd.calculations.script.structure_dict`)."""
    from ase import Atoms

    return Atoms(
        symbols=structure['symbols'],
        positions=structure['positions'],
        cell=structure['cell'],
        pbc=structure['pbc'],
        masses=structure.get('masses'),
    )


def write_frames(frames: t.Sequence, directory: str | pathlib.Path, type_map: t.Sequence[str]) -> None:
    """Write ASE frames as deepmd/npy systems under ``directory``, in their order.

    Each run of consecutive frames with the same atoms (symbols, periodicity, virial or not) becomes one system
    ``sys.NNN``, numbered so that the sorted paths give the frame order.
    """
    from aiida_pfd.data.dataset import systems_from_ase

    def key(atoms):
        return tuple(atoms.get_chemical_symbols()), tuple(atoms.pbc), 'stress' in getattr(atoms.calc, 'results', {})

    systems = [system for _, run in itertools.groupby(frames, key=key) for system in systems_from_ase(run)]
    width = max(3, len(str(len(systems) - 1)))
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for index, system in enumerate(systems):
        system.sort_atom_names(type_map=list(type_map))
        system.to('deepmd/npy', str(directory / f'sys.{index:0{width}d}'))


def get_calculator(model: dict):
    """ASE calculator from an ``input.json`` model entry: ``{"backend", "path", "head"}``."""
    from aiida_pfd.backends import get_backend

    return get_backend(model['backend']).calculator(pathlib.Path(model['path']), head=model.get('head'))


def main_guard(run: t.Callable[[dict], None]) -> None:
    """Run ``run(parameters)``; on :class:`ScriptStop` write ``error.json`` and exit 0 so that the parser decides."""
    parameters = read_input()
    try:
        run(parameters)
    except ScriptStop as stop:
        pathlib.Path(ERROR_FILE).write_text(json.dumps({'exit_code': stop.exit_code, 'message': stop.message}))
        print(f'stopped: {stop.exit_code}: {stop.message}', file=sys.stderr)
