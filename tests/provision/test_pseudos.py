"""The PFD/Debian/PBE family: which UPF files it takes, and the cutoffs it recommends."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from aiida_pfd.provision import Status
from aiida_pfd.provision.pseudos import DEBIAN_PSEUDO_DIR, UpfInfo, ensure_family, select_pbe_pseudos

needs_debian_pseudos = pytest.mark.skipif(
    not DEBIAN_PSEUDO_DIR.is_dir(), reason=f'{DEBIAN_PSEUDO_DIR} is absent (apt-get install quantum-espresso)'
)


def make_info(name: str, element: str = 'Si', functional: str = 'PBE', **kwargs) -> UpfInfo:
    defaults = dict(pseudo_type='US', spin_orbit=False, suggested_ecutwfc=None, suggested_ecutrho=None)
    defaults.update(kwargs)
    return UpfInfo(path=pathlib.Path(name), element=element, functional=functional, **defaults)


@pytest.mark.parametrize(
    ('functional', 'expected'),
    [
        ('PBE', True),
        (' SLA  PW   PBX  PBC', True),
        ('SLA PW PBE PBE', True),
        ('PBESOL', False),
        ('SLA  PW   PSX  PSC', False),
        ('SLA  PZ   NOGX NOGC', False),
        ('SLA PW TPSS TPSS', False),
    ],
)
def test_functional_recognition(functional, expected):
    assert make_info('Si.x.UPF', functional=functional).is_pbe is expected


@pytest.mark.parametrize(
    ('name', 'element', 'kwargs', 'expected'),
    [
        ('Si.pbe-nl-rrkjus_psl.1.0.0.UPF', 'Si', {}, True),
        ('Si_r.upf', 'Si', {'spin_orbit': True}, False),
        ('Si.rel-pbe-rrkj.UPF', 'Si', {}, False),
        ('Rhs.pbe-rrkjus_lb.UPF', 'Rh', {}, False),
        ('H.coulomb-ae.UPF', 'H', {'pseudo_type': '1/r'}, False),
        ('CorelUSPBE.RRKJ3.UPF', 'Co', {}, False),
    ],
)
def test_only_regular_valence_pseudos(name, element, kwargs, expected):
    assert make_info(name, element=element, **kwargs).is_regular is expected


def test_preference_order():
    names = [
        'Si.pbe-rrkj.UPF',
        'Si.pbe-n-kjpaw_psl.1.0.0.UPF',
        'Si.pbe-n-rrkjus_psl.0.1.UPF',
        'Si.pbe-nl-rrkjus_psl.1.0.0.UPF',
    ]
    ranked = sorted((make_info(n) for n in names), key=lambda info: info.preference)
    assert [info.path.name for info in ranked] == [
        'Si.pbe-nl-rrkjus_psl.1.0.0.UPF',
        'Si.pbe-n-kjpaw_psl.1.0.0.UPF',
        'Si.pbe-n-rrkjus_psl.0.1.UPF',
        'Si.pbe-rrkj.UPF',
    ]


def test_cutoffs_from_file_suggestions_with_dual_and_floor():
    assert make_info('O.pbe-x.UPF', 'O', suggested_ecutwfc=47.0, suggested_ecutrho=323.0).cutoffs == (47.0, 376.0)
    assert make_info('O.pbe-x.UPF', 'O', pseudo_type='NC', suggested_ecutwfc=60.0).cutoffs == (60.0, 240.0)
    assert make_info('Ge.pbe-x.UPF', 'Ge', suggested_ecutwfc=17.0, suggested_ecutrho=136.0).cutoffs == (30.0, 240.0)
    assert make_info('O.pbe-x.UPF', 'O').cutoffs == (50.0, 400.0)


@needs_debian_pseudos
def test_debian_selection_maps_si_to_pslibrary():
    selection = select_pbe_pseudos()
    assert selection['Si'].path.name == 'Si.pbe-nl-rrkjus_psl.1.0.0.UPF'
    assert selection['Si'].cutoffs == (30.0, 240.0)
    assert all(info.is_pbe and info.is_regular for info in selection.values())
    assert all(info.path.name.split('.')[0].split('_')[0] == element for element, info in selection.items())


@needs_debian_pseudos
def test_family_serves_the_quantumespresso_protocol(aiida_profile_clean, localhost):
    from aiida import orm
    from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain
    from ase.build import bulk

    family, outcome = ensure_family()
    assert outcome.status is Status.CREATED
    assert family.get_pseudo('Si').filename == 'Si.pbe-nl-rrkjus_psl.1.0.0.UPF'
    assert family.get_recommended_cutoffs(elements=('Si',), unit='Ry') == (30.0, 240.0)

    code = orm.InstalledCode(label='pw', computer=localhost, filepath_executable='/usr/bin/pw.x').store()
    structure = orm.StructureData(ase=bulk('Si', 'diamond', a=5.43))
    builder = PwBaseWorkChain.get_builder_from_protocol(code, structure, overrides={'pseudo_family': family.label})
    assert builder.pw.parameters['SYSTEM']['ecutwfc'] == 30.0
    assert builder.pw.parameters['SYSTEM']['ecutrho'] == 240.0
    assert builder.pw.pseudos['Si'].filename == 'Si.pbe-nl-rrkjus_psl.1.0.0.UPF'

    assert ensure_family()[1].status is Status.UNCHANGED


def test_family_from_custom_directory(aiida_profile_clean, tmp_path):
    if not DEBIAN_PSEUDO_DIR.is_dir():
        pytest.skip(f'{DEBIAN_PSEUDO_DIR} is absent')
    for name in ('Si.pbe-rrkj.UPF', 'Si.pbe-nl-rrkjus_psl.1.0.0.UPF', 'Si.pz-vbc.UPF'):
        shutil.copy(DEBIAN_PSEUDO_DIR / name, tmp_path / name)
    family, outcome = ensure_family(tmp_path, label='test/Si')
    assert outcome.status is Status.CREATED
    assert [p.filename for p in family.nodes] == ['Si.pbe-nl-rrkjus_psl.1.0.0.UPF']


def test_family_errors_name_the_fix(aiida_profile_clean, tmp_path):
    with pytest.raises(FileNotFoundError, match='apt-get install quantum-espresso'):
        ensure_family(tmp_path / 'missing')
    with pytest.raises(ValueError, match='no scalar-relativistic PBE UPF'):
        ensure_family(tmp_path)
