"""``pfd.label`` parser on fixture folders holding what the real label script writes (see ``fixtures/label``)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from aiida import orm
from ase.build import bulk

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'label'


def structures(count: int) -> dict[str, orm.StructureData]:
    """``count`` structure inputs (the parser only counts them)."""
    return {f'structures__s{index}': orm.StructureData(ase=bulk('Cu', 'fcc', a=3.6)) for index in range(count)}


def test_ok(aiida_profile_clean, parse_retrieved):
    results, calcfunction = parse_retrieved('pfd.label', FIXTURES / 'ok', inputs=structures(3))

    assert calcfunction.is_finished_ok, calcfunction.exit_message
    dataset = results['dataset']
    assert dataset.n_frames == 3 and dataset.is_labelled and dataset.has_virial
    assert dataset.type_map == ['Cu', 'Si']
    assert dataset.base.attributes.get('formulae') == ['Cu4', 'Cu3Si', 'Cu4']  # input order, not grouped
    frames = dataset.to_ase()
    assert frames[1].get_chemical_symbols() == ['Cu', 'Si', 'Cu', 'Cu']
    assert all(np.isfinite(atoms.get_forces()).all() for atoms in frames)


def test_input_dataset_sets_the_expected_frame_count(aiida_profile_clean, parse_retrieved):
    from aiida_pfd.data import LabeledDataset

    dataset = LabeledDataset.from_structures([orm.StructureData(ase=bulk('Cu', 'fcc', a=3.6))] * 3)
    results, calcfunction = parse_retrieved('pfd.label', FIXTURES / 'ok', inputs={'dataset': dataset})
    assert calcfunction.is_finished_ok, calcfunction.exit_message
    assert results['dataset'].n_frames == 3


@pytest.mark.parametrize(
    ('case', 'n_inputs', 'exit_status', 'message'),
    [
        ('missing_output', 3, 301, 'labelled, label.json not found'),
        ('script_failed', 3, 302, 'ValueError: The provided filename'),
        ('unparsable', 3, 310, 'label.json'),
        ('count_mismatch', 3, 320, '3 input frames, 2 in labelled/'),
        ('ok', 4, 320, '4 input frames, 3 in labelled/'),
        ('non_finite', 2, 400, 'NaN or infinite energy, forces or virial in frame(s) 1'),
    ],
)
def test_exit_codes(aiida_profile_clean, parse_retrieved, case, n_inputs, exit_status, message):
    results, calcfunction = parse_retrieved('pfd.label', FIXTURES / case, inputs=structures(n_inputs))

    assert calcfunction.exit_status == exit_status
    assert message in calcfunction.exit_message
    assert 'dataset' not in results
