"""Structures a task group explores besides its input structures: supercells, point defects, strained cells.

The functions here act on ASE ``Atoms``; :func:`generate_structures` is the calcfunction the workchains call, so that
every derived structure is a node made from its input structure. A task group asks for them with three keys (all
optional):

==============  ====================================================================================================
key             meaning
==============  ====================================================================================================
``supercell``   ``[n1, n2, n3]``: repeat each input structure this many times along its cell vectors first
``defects``     list of ``'vacancy'`` (one atom removed) and ``'interstitial'`` (one atom added at the point of the
                cell farthest from every atom): one structure per entry, instead of the perfect one
``strains``     list of linear strains, e.g. ``[-0.05, 0.0, 0.05]``: one isotropically strained copy per entry
                (cell and positions scaled by ``1 + strain``), instead of the unstrained one
==============  ====================================================================================================

The structures are the product of ``defects`` (or the perfect cell) and ``strains`` (or none), named after the
input structure, e.g. ``si8_x222_vacancy_strain_m5p0`` (2x2x2 supercell of ``si8``, one vacancy, -5.0 % strain).
"""

from __future__ import annotations

import itertools
import typing as t

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

if t.TYPE_CHECKING:
    from ase import Atoms

DEFECTS = ('vacancy', 'interstitial')
STRUCTURE_KEYS = ('supercell', 'defects', 'strains')


def check_structure_keys(group: dict) -> str | None:
    """What is wrong with a task group's ``supercell``, ``defects`` and ``strains`` (naming the fix), or None."""
    supercell = group.get('supercell')
    if supercell is not None and not (
        isinstance(supercell, list)
        and len(supercell) == 3
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in supercell)
    ):
        return f'`supercell` is {supercell!r}: give three integers >= 1, e.g. [2, 2, 2].'
    defects = group.get('defects')
    if defects is not None and (not isinstance(defects, list) or not defects or set(defects) - set(DEFECTS)):
        return f'`defects` is {defects!r}: give a non-empty list of {list(DEFECTS)}.'
    strains = group.get('strains')
    if strains is not None and not (
        isinstance(strains, list)
        and strains
        and all(isinstance(s, (int, float)) and not isinstance(s, bool) and -0.5 < s < 0.5 for s in strains)
    ):
        return f'`strains` is {strains!r}: give a non-empty list of linear strains in (-0.5, 0.5), e.g. [-0.05, 0.05].'
    return None


def vacancy(atoms: Atoms, index: int = 0) -> Atoms:
    """``atoms`` without atom ``index``."""
    defective = atoms.copy()
    del defective[index]
    return defective


def largest_void(atoms: Atoms, spacing: float = 0.2) -> np.ndarray:
    """Cartesian point of a grid over the cell (about ``spacing`` Å apart) farthest from every atom and image."""
    from ase.geometry import get_distances

    counts = [max(2, int(np.ceil(length / spacing))) for length in atoms.cell.lengths()]
    grid = np.stack(np.meshgrid(*(np.arange(n) / n for n in counts), indexing='ij'), axis=-1).reshape(-1, 3)
    points = grid @ atoms.cell.array
    _, distances = get_distances(points, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    return points[int(np.argmax(distances.min(axis=1)))]


def interstitial(atoms: Atoms, symbol: str | None = None) -> Atoms:
    """``atoms`` with one more atom (of ``symbol``, else the most common element) at its :func:`largest_void`."""
    from ase import Atom

    symbols = atoms.get_chemical_symbols()
    symbol = symbol or max(sorted(set(symbols)), key=symbols.count)
    defective = atoms.copy()
    defective.append(Atom(symbol, largest_void(atoms)))
    return defective


def strained(atoms: Atoms, strain: float) -> Atoms:
    """``atoms`` with cell and positions scaled isotropically by ``1 + strain``."""
    scaled = atoms.copy()
    scaled.set_cell(atoms.cell.array * (1.0 + strain), scale_atoms=True)
    return scaled


def strain_label(strain: float) -> str:
    """``strain_m5p0`` for -0.05, ``strain_p2p5`` for 0.025: a valid link label."""
    return f'strain_{"m" if strain < 0 else "p"}{abs(strain) * 100:.1f}'.replace('.', 'p')


def derived_structures(name: str, atoms: Atoms, group: dict) -> dict[str, Atoms]:
    """The structures a task group's ``supercell``, ``defects`` and ``strains`` make of ``atoms``, by name."""
    base, stem = atoms, name
    if group.get('supercell'):
        base = atoms.repeat(group['supercell'])
        stem = f'{name}_x{"".join(str(n) for n in group["supercell"])}'
    variants = {stem: base}
    if group.get('defects'):
        makers = {'vacancy': vacancy, 'interstitial': interstitial}
        variants = {f'{stem}_{defect}': makers[defect](base) for defect in group['defects']}
    if group.get('strains'):
        variants = {
            f'{key}_{strain_label(strain)}': strained(value, strain)
            for (key, value), strain in itertools.product(variants.items(), group['strains'])
        }
    return variants


@calcfunction
def generate_structures(structure: orm.StructureData, parameters: orm.Dict) -> dict:
    """The derived structures of one input structure, by name (``parameters``: ``name`` and the task group's
    ``supercell``/``defects``/``strains``)."""
    spec = parameters.get_dict()
    derived = derived_structures(spec['name'], structure.get_ase(), spec)
    return {key: orm.StructureData(ase=atoms) for key, atoms in derived.items()}


def needs_generation(group: dict) -> bool:
    return any(group.get(key) for key in STRUCTURE_KEYS)
