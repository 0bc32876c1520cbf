"""Build the ``PFD/Debian/PBE`` pseudopotential family from the UPF files that Debian's QE packages install.

Debian's ``quantum-espresso-data`` ships a few dozen UPF files of mixed provenance (LDA, PBEsol, spin-orbit, core-hole
and all-electron potentials among them). The family keeps exactly one scalar-relativistic PBE file per element,
preferring pslibrary 1.0.0, and records recommended cutoffs so that
``PwBaseWorkChain.get_builder_from_protocol(..., overrides={'pseudo_family': 'PFD/Debian/PBE'})`` works.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

from .outcome import Outcome, Status

FAMILY_LABEL = 'PFD/Debian/PBE'
DEBIAN_PSEUDO_DIR = pathlib.Path('/usr/share/espresso/pseudo')
STRINGENCY = 'normal'

#: Cutoffs (Ry) validated elsewhere for these exact files; they take precedence over the files' own suggestions.
#: Si: SSSP efficiency uses this pslibrary 1.0.0 file at 30/240 Ry.
CURATED_CUTOFFS = {'Si.pbe-nl-rrkjus_psl.1.0.0.UPF': (30.0, 240.0)}

#: Fallback wavefunction cutoff (Ry) for a file that suggests none, the floor under any suggestion, and the
#: ecutrho/ecutwfc ratio by pseudo type.
FALLBACK_ECUTWFC = 50.0
MIN_ECUTWFC = 30.0
DUAL = {'NC': 4.0, 'SL': 4.0, 'US': 8.0, 'USPP': 8.0, 'PAW': 8.0}

_SUGGESTED_WFC = re.compile(r'Suggested minimum cutoff for wavefunctions:\s*([0-9.]+)\s*Ry', re.IGNORECASE)
_SUGGESTED_RHO = re.compile(r'Suggested minimum cutoff for charge density:\s*([0-9.]+)\s*Ry', re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class UpfInfo:
    """What the selection needs to know about one UPF file."""

    path: pathlib.Path
    element: str
    functional: str
    pseudo_type: str
    spin_orbit: bool
    suggested_ecutwfc: float | None
    suggested_ecutrho: float | None

    @property
    def is_pbe(self) -> bool:
        """Whether the exchange-correlation functional is PBE (given as ``PBE`` or as ``SLA PW PBX PBC``)."""
        tokens = self.functional.upper().split()
        if tokens == ['PBE']:
            return True
        return (
            len(tokens) >= 4
            and tokens[:2] == ['SLA', 'PW']
            and tokens[2] in ('PBX', 'PBE')
            and tokens[3]
            in (
                'PBC',
                'PBE',
            )
        )

    @property
    def is_regular(self) -> bool:
        """Whether the file is an ordinary valence pseudopotential for its element.

        Excludes spin-orbit (fully relativistic) files, all-electron Coulomb potentials, and files whose name does not
        start with the element symbol (e.g. core-hole potentials such as ``Rhs.*``).
        """
        stem = re.split(r'[._-]', self.path.name, maxsplit=1)[0]
        return (
            not self.spin_orbit
            and stem == self.element
            and '.rel-' not in self.path.name
            and 'coulomb' not in self.path.name.lower()
            and self.pseudo_type.upper() != '1/R'
        )

    @property
    def preference(self) -> tuple:
        """Sort key: pslibrary 1.0.0 first, then other pslibrary versions, ultrasoft before PAW, then by name."""
        name = self.path.name
        library = 0 if '_psl.1.0.0' in name else 1 if '_psl.' in name else 2
        kind = 0 if 'rrkjus' in name else 1 if 'kjpaw' in name else 2
        return (library, kind, name)

    @property
    def cutoffs(self) -> tuple[float, float]:
        """Recommended (ecutwfc, ecutrho) in Ry."""
        if self.path.name in CURATED_CUTOFFS:
            return CURATED_CUTOFFS[self.path.name]
        ecutwfc = max(self.suggested_ecutwfc or FALLBACK_ECUTWFC, MIN_ECUTWFC)
        dual = DUAL.get(self.pseudo_type.upper(), 8.0)
        return ecutwfc, max(self.suggested_ecutrho or 0.0, dual * ecutwfc)


def read_upf_info(path: pathlib.Path) -> UpfInfo | None:
    """Return the header information of UPF file ``path``, or ``None`` if aiida-pseudo cannot read it as UPF."""
    from aiida_pseudo.data.pseudo.upf import parse_element

    try:
        text = path.read_text(errors='replace')
    except OSError:
        return None
    if '<PP_HEADER' not in text:
        return None
    try:
        element = parse_element(text)
    except Exception:  # aiida-pseudo raises ParsingError or ValueError for files it cannot read
        return None

    header = text[text.index('<PP_HEADER') :]
    functional = _attribute(header, 'functional')
    if functional is None:  # UPF v1: "<tokens> <short name>  Exchange-Correlation functional"
        match = re.search(r'^\s*(.*?)\s+Exchange-Correlation functional', header, re.MULTILINE)
        functional = ' '.join(match.group(1).split()[:4]) if match else ''
    pseudo_type = _attribute(header, 'pseudo_type')
    if pseudo_type is None:
        match = re.search(r'^\s*(US|NC|PAW)\s', header, re.MULTILINE)
        pseudo_type = match.group(1) if match else 'NC'
    spin_orbit = (_attribute(header, 'has_so') or 'F').strip().upper() in ('T', 'TRUE', '.TRUE.')
    wfc = _SUGGESTED_WFC.search(text)
    rho = _SUGGESTED_RHO.search(text)
    return UpfInfo(
        path=path,
        element=element,
        functional=functional.strip(),
        pseudo_type=pseudo_type.strip(),
        spin_orbit=spin_orbit,
        suggested_ecutwfc=float(wfc.group(1)) if wfc else None,
        suggested_ecutrho=float(rho.group(1)) if rho else None,
    )


def _attribute(header: str, name: str) -> str | None:
    """Return attribute ``name`` of a UPF v2 ``<PP_HEADER .../>`` tag (``None`` for UPF v1, whose tag has none)."""
    match = re.search(rf'\b{name}\s*=\s*"([^"]*)"', header[: header.find('>') + 1])
    return match.group(1) if match else None


def select_pbe_pseudos(directory: pathlib.Path = DEBIAN_PSEUDO_DIR) -> dict[str, UpfInfo]:
    """Return the preferred scalar-relativistic PBE UPF file of each element found in ``directory``."""
    chosen: dict[str, UpfInfo] = {}
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        info = read_upf_info(path)
        if info is None or not info.is_pbe or not info.is_regular:
            continue
        if info.element not in chosen or info.preference < chosen[info.element].preference:
            chosen[info.element] = info
    return dict(sorted(chosen.items()))


def ensure_family(directory: pathlib.Path = DEBIAN_PSEUDO_DIR, label: str = FAMILY_LABEL):
    """Return the family ``label``, creating it from ``directory`` if it does not exist yet.

    An existing family is left untouched; the outcome says whether its files match what ``directory`` holds now.
    """
    from aiida.common import exceptions
    from aiida_pseudo.data.pseudo import UpfData
    from aiida_pseudo.groups.family import CutoffsPseudoPotentialFamily

    if not directory.is_dir():
        raise FileNotFoundError(
            f'pseudopotential directory `{directory}` does not exist: install Quantum ESPRESSO '
            '(`apt-get install quantum-espresso`) or pass `--pseudo-dir`.'
        )
    selection = select_pbe_pseudos(directory)
    if not selection:
        raise ValueError(f'no scalar-relativistic PBE UPF file found in `{directory}`.')

    try:
        family = CutoffsPseudoPotentialFamily.collection.get(label=label)
    except exceptions.NotExistent:
        pass
    else:
        wanted = {element: info.path.name for element, info in selection.items()}
        present = {pseudo.element: pseudo.filename for pseudo in family.nodes}
        if present == wanted:
            return family, Outcome('pseudo family', label, Status.UNCHANGED, f'{len(present)} elements')
        return family, Outcome(
            'pseudo family', label, Status.WARNING, f'exists with other files than {directory} now holds; kept as it is'
        )

    pseudos = []
    for info in selection.values():
        with info.path.open('rb') as handle:
            pseudos.append(UpfData(handle, filename=info.path.name).store())

    family = CutoffsPseudoPotentialFamily(
        label=label,
        description=f'One scalar-relativistic PBE UPF per element from {directory} (pslibrary 1.0.0 preferred).',
    ).store()
    family.add_nodes(pseudos)
    cutoffs = {
        element: {'cutoff_wfc': info.cutoffs[0], 'cutoff_rho': info.cutoffs[1]} for element, info in selection.items()
    }
    family.set_cutoffs(cutoffs, STRINGENCY, unit='Ry')
    return family, Outcome('pseudo family', label, Status.CREATED, f'{len(pseudos)} elements from {directory}')
