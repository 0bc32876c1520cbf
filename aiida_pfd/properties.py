"""Material properties from labelled frames, the same formulas for a model and for DFT.

The structures come from :func:`eos_structures`, :func:`elastic_structures` and :func:`vacancy_structures`; label them
with any calculator (a model, or pw.x through the workflows) and pass the labelled frames to :func:`equation_of_state`,
:func:`elastic_constants` and :func:`vacancy_formation_energy`. ``pfd.validate`` does this for models;
``reference_properties`` for DFT frames that carry the same ``category`` names (:data:`CATEGORIES`).
"""

from __future__ import annotations

import typing as t

import numpy as np

if t.TYPE_CHECKING:
    from ase import Atoms

#: Frame categories of the property structures, as the reference frames name them.
CATEGORIES = {'eos': 'eos_2', 'elastic': 'elastic_8', 'vacancy': 'vacancy_formation'}
EOS_SCALES = tuple(float(s) for s in np.linspace(0.97, 1.03, 7))
STRAIN = 0.01


def eos_structures(primitive: Atoms, scales: t.Sequence[float] = EOS_SCALES) -> list[Atoms]:
    """``primitive`` with its lattice scaled by each of ``scales``."""
    out = []
    for scale in scales:
        cell = primitive.copy()
        cell.set_cell(primitive.cell.array * scale, scale_atoms=True)
        out.append(cell)
    return out


def equation_of_state(frames: t.Sequence[Atoms], reference_length: float) -> dict:
    """Birch-Murnaghan fit of the labelled ``frames`` of one cell at several volumes: ``volume_per_atom`` (Å^3),
    ``b0`` (GPa) and ``a0`` = ``reference_length`` x (V0 / V of the middle frame)^(1/3) (Å; the middle frame is the
    unscaled cell, ``reference_length`` its conventional lattice parameter)."""
    from ase.eos import EquationOfState
    from ase.units import GPa

    volumes = np.array([frame.get_volume() for frame in frames])
    energies = np.array([frame.get_potential_energy() for frame in frames])
    v0, _, b0 = EquationOfState(volumes, energies, eos='birchmurnaghan').fit()
    middle = volumes[len(volumes) // 2]
    return {
        'a0': float(reference_length * (v0 / middle) ** (1 / 3)),
        'b0': float(b0 / GPa),
        'volume_per_atom': float(v0 / len(frames[0])),
    }


def elastic_structures(cubic: Atoms, strain: float = STRAIN) -> list[Atoms]:
    """The unstrained cubic cell, then ``e_xx = strain`` and ``e_yz = e_zy = strain`` (ions not relaxed)."""
    shear = np.zeros((3, 3))
    shear[1, 2] = shear[2, 1] = strain
    out = [cubic.copy()]
    for deformation in (np.diag([strain, 0, 0]), shear):
        cell = cubic.copy()
        cell.set_cell(cubic.cell.array @ (np.eye(3) + deformation), scale_atoms=True)
        out.append(cell)
    return out


def elastic_constants(frames: t.Sequence[Atoms], strain: float = STRAIN) -> dict:
    """C11, C12 and the ion-clamped C44 (GPa) of a cubic crystal from the stresses of :func:`elastic_structures`
    (one-sided differences from the unstrained cell)."""
    from ase.units import GPa

    reference, uniaxial, shear = (frame.get_stress(voigt=False) for frame in frames)
    return {
        'c11': float((uniaxial[0, 0] - reference[0, 0]) / strain / GPa),
        'c12': float((uniaxial[1, 1] - reference[1, 1]) / strain / GPa),
        'c44_unrelaxed': float((shear[1, 2] - reference[1, 2]) / (2 * strain) / GPa),
    }


def vacancy_structures(cubic: Atoms, repeat: t.Sequence[int] = (2, 1, 1)) -> list[Atoms]:
    """The perfect supercell ``repeat`` of ``cubic`` and the same less atom 0 (ions where they were)."""
    perfect = cubic.repeat(repeat)
    vacancy = perfect.copy()
    del vacancy[0]
    return [perfect, vacancy]


def vacancy_formation_energy(perfect: Atoms, vacancy: Atoms) -> float:
    """E(N-1) - (N-1)/N E(N), eV."""
    n = len(perfect)
    return float(vacancy.get_potential_energy() - (n - 1) / n * perfect.get_potential_energy())


def by_category(frames: t.Sequence[Atoms], categories: t.Sequence[str], name: str) -> list[Atoms]:
    return [frame for frame, category in zip(frames, categories) if category == name]


def reference_properties(frames: t.Sequence[Atoms], categories: t.Sequence[str], reference_length: float) -> dict:
    """Equation of state, elastic constants and unrelaxed vacancy energy of the DFT ``frames`` in the property
    categories (:data:`CATEGORIES`): the elastic frames are the strained ones, the unstrained one is the EOS frame at
    scale 1 (same lattice)."""
    eos = by_category(frames, categories, CATEGORIES['eos'])
    result = equation_of_state(eos, reference_length) if len(eos) >= 5 else {}
    strained = by_category(frames, categories, CATEGORIES['elastic'])
    if len(strained) == 2 and eos:
        middle = eos[len(eos) // 2]
        reference = middle.copy()
        reference.calc = middle.calc
        # the primitive cell's stress at the same lattice is the cubic cell's: intensive
        result.update(elastic_constants([reference, *strained]))
    vacancy = by_category(frames, categories, CATEGORIES['vacancy'])
    if len(vacancy) == 2:
        perfect, defective = sorted(vacancy, key=len, reverse=True)
        result['vacancy_unrelaxed'] = vacancy_formation_energy(perfect, defective)
    return result


def radial_distribution(snapshots: t.Sequence[Atoms], rmax: float = 5.0, bins: int = 100) -> tuple[np.ndarray, ...]:
    """g(r) averaged over ``snapshots`` (periodic), on ``bins`` shells up to ``rmax`` Å: (r, g)."""
    from ase.neighborlist import neighbor_list

    edges = np.linspace(0.0, rmax, bins + 1)
    histogram = np.zeros(bins)
    for atoms in snapshots:
        distances = neighbor_list('d', atoms, rmax)
        counts, _ = np.histogram(distances, bins=edges)
        density = len(atoms) / atoms.get_volume()
        shells = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
        histogram += counts / (len(atoms) * density * shells)
    centres = 0.5 * (edges[1:] + edges[:-1])
    return centres, histogram / len(snapshots)
