"""The Ziegler-Biersack-Littmark (ZBL) universal screened nuclear repulsion, as a DeePMD pair table.

A DeePMD model trained on equilibrium and thermal frames has never seen two atoms closer than about 80 % of a bond
length; in MD it may pull them together with nothing to stop it. ``model.use_srtab`` (DeePMD's DP-ZBL model) blends
the network with this tabulated repulsion below ``sw_rmax``: pure ZBL under ``sw_rmin``, pure network above
``sw_rmax`` (by the softmin of each atom's neighbour distances).
"""

from __future__ import annotations

import io
import itertools
import typing as t

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

#: e^2 / (4 pi epsilon_0) in eV Å.
COULOMB = 14.399645
#: 0.8854 Bohr radii in Å: the ZBL screening length is this / (Z1^0.23 + Z2^0.23).
SCREENING = 0.46850
PHI = ((0.18175, 3.19980), (0.50986, 0.94229), (0.28022, 0.40290), (0.02817, 0.20162))
TABLE_FILENAME = 'pair_table.txt'


def zbl_energy(z1: int, z2: int, distance: np.ndarray) -> np.ndarray:
    """ZBL pair energy in eV of nuclei ``z1``, ``z2`` at ``distance`` Å."""
    r = np.asarray(distance, dtype=float)
    x = r * (z1**0.23 + z2**0.23) / SCREENING
    phi = sum(c * np.exp(-d * x) for c, d in PHI)
    return COULOMB * z1 * z2 / r * phi


def pair_table(type_map: t.Sequence[str], rmax: float, rmin: float = 0.05, step: float = 0.005) -> np.ndarray:
    """DeePMD's pair table: the distance column, then one energy column per type pair ``i <= j`` in type-map order."""
    from ase.data import atomic_numbers

    numbers = [atomic_numbers[symbol] for symbol in type_map]
    r = np.arange(rmin, rmax + step / 2, step)
    columns = [
        zbl_energy(numbers[i], numbers[j], r)
        for i, j in itertools.combinations_with_replacement(range(len(numbers)), 2)
    ]
    return np.column_stack([r, *columns])


@calcfunction
def zbl_pair_table(type_map: orm.List, rmax: orm.Float) -> orm.SinglefileData:
    """The ZBL :func:`pair_table` of ``type_map`` up to ``rmax`` Å (the descriptor's cutoff) as a text file."""
    buffer = io.StringIO()
    np.savetxt(buffer, pair_table(type_map.get_list(), rmax.value), fmt='%.10g')
    return orm.SinglefileData(io.BytesIO(buffer.getvalue().encode()), filename=TABLE_FILENAME)
