"""Label frames with a model: energy, forces and virial of each frame, written as deepmd/npy under ``labelled/``.

``input.json``: ``model`` (``{"backend", "path", "head"}``), ``type_map`` (the model's), and either ``dataset`` (a
folder of deepmd/npy systems) or ``structures`` (a list of ``{"name", **structure_dict}``, see
:func:`aiida_pfd.calculations.script.structure_dict`).
Output: ``labelled/sys.NNN`` (one system per run of consecutive frames with the same atoms, numbered so that sorting
the paths gives the input frame order) and ``label.json`` (``n_frames``, ``type_map``, ``names``).

:func:`predict_frames` is also used by :mod:`aiida_pfd.scripts.evaluate`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import typing as t

import numpy as np

from .common import ScriptStop, build_atoms, get_calculator, load_frames, main_guard, write_frames

if t.TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator

LABELLED_DIR = 'labelled'
SUMMARY_FILE = 'label.json'


@dataclasses.dataclass
class Labels:
    """Per-frame labels: energies (eV), forces (eV/Å, one ``(n_atoms, 3)`` array per frame) and virials (eV, a
    ``(3, 3)`` array, or None for a frame that is not periodic in three dimensions)."""

    energies: np.ndarray
    forces: list[np.ndarray]
    virials: list[np.ndarray | None]

    @property
    def natoms(self) -> np.ndarray:
        return np.array([len(forces) for forces in self.forces], dtype=int)


def predict_frames(
    frames: t.Sequence[Atoms], calculator: Calculator | None, non_finite: str = 'ERROR_NON_FINITE_LABELS'
) -> Labels:
    """Energy, forces and virial (``-stress * volume``, 3D-periodic frames only) of each frame.

    With ``calculator=None`` each frame's own calculator is used (e.g. the reference labels of a dataset). Raises
    :class:`ScriptStop` with exit code ``non_finite`` if a value is NaN or infinite.
    """
    energies, forces, virials = [], [], []
    for atoms in frames:
        if calculator is not None:
            atoms = atoms.copy()
            atoms.calc = calculator
        energies.append(float(atoms.get_potential_energy()))
        forces.append(np.array(atoms.get_forces(), dtype=float))
        virials.append(_virial(atoms))

    bad = [
        index
        for index, (energy, force, virial) in enumerate(zip(energies, forces, virials))
        if not (np.isfinite(energy) and np.isfinite(force).all() and (virial is None or np.isfinite(virial).all()))
    ]
    if bad:
        shown = ', '.join(map(str, bad[:20])) + (', ...' if len(bad) > 20 else '')
        source = 'the model gave' if calculator is not None else 'the frames carry'
        raise ScriptStop(non_finite, f'{source} NaN or infinite energy, forces or virial in frame(s) {shown}.')
    return Labels(np.array(energies, dtype=float), forces, virials)


def _virial(atoms: Atoms) -> np.ndarray | None:
    """``-stress * volume`` of a 3D-periodic frame whose calculator gives a stress, else None."""
    from ase.calculators.calculator import PropertyNotImplementedError

    if not atoms.pbc.all():
        return None
    try:
        return -atoms.get_stress(voigt=False) * atoms.get_volume()
    except PropertyNotImplementedError:
        return None


def labelled_frames(frames: t.Sequence[Atoms], labels: Labels) -> list[Atoms]:
    """Fresh copies of ``frames`` (no info, no old labels) carrying ``labels`` in a ``SinglePointCalculator``."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    result = []
    for atoms, energy, forces, virial in zip(frames, labels.energies, labels.forces, labels.virials):
        copy = Atoms(symbols=atoms.get_chemical_symbols(), positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        results = {'energy': energy, 'forces': forces}
        if virial is not None:
            results['stress'] = -virial / copy.get_volume()
        copy.calc = SinglePointCalculator(copy, **results)
        result.append(copy)
    return result


def run(parameters: dict) -> None:
    if parameters.get('dataset'):
        frames = load_frames(parameters['dataset'])
        names = None
    else:
        frames = [build_atoms(structure) for structure in parameters['structures']]
        names = [s['name'] for s in parameters['structures']]
    if not frames:
        raise ScriptStop('ERROR_FRAME_COUNT_MISMATCH', 'no input frames were found.')

    labels = predict_frames(frames, get_calculator(parameters['model']))
    write_frames(labelled_frames(frames, labels), LABELLED_DIR, parameters['type_map'])
    summary = {'n_frames': len(frames), 'type_map': parameters['type_map'], 'names': names}
    pathlib.Path(SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    print(f'labelled {len(frames)} frames')


if __name__ == '__main__':
    main_guard(run)
