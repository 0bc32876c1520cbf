"""Parser of ``pfd.evaluate``: ``errors.npz`` becomes the ``errors`` ArrayData, ``metrics.json`` the ``metrics``."""

from __future__ import annotations

import io
import json

import numpy as np
from aiida import orm
from aiida.engine import ExitCode

from ..scripts.evaluate import ERRORS_FILE, METRICS_FILE
from .script import ScriptParser

#: Arrays every ``errors.npz`` holds; ``virial_per_atom_error`` is there only when the reference has virials.
ARRAYS = (
    'natoms',
    'energy_per_atom_reference',
    'energy_per_atom_predicted',
    'energy_per_atom_error',
    'max_force_error',
    'force_rmse',
)
METRICS = ('n_frames', 'n_atoms', 'energy_rmse_per_atom', 'energy_mae_per_atom', 'force_rmse', 'force_mae', 'units')


class EvaluateParser(ScriptParser):
    """Outputs ``errors`` (per-frame arrays, reference frame order) and ``metrics`` (RMSE/MAE, ``units``)."""

    def parse_outputs(self, stopped: bool) -> ExitCode | None:
        if stopped:
            return None
        missing = self.missing(ERRORS_FILE, METRICS_FILE)
        if missing:
            return self.missing_output(missing)

        repository = self.retrieved.base.repository
        try:
            metrics = json.loads(repository.get_object_content(METRICS_FILE))
            absent = [key for key in METRICS if key not in metrics]
            if absent:
                raise KeyError(f'no {", ".join(absent)}')
        except (ValueError, KeyError, TypeError) as exception:
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'{METRICS_FILE}: {exception}')
        try:
            with np.load(io.BytesIO(repository.get_object_content(ERRORS_FILE, mode='rb'))) as archive:
                arrays = {name: archive[name] for name in archive.files}
            absent = [name for name in ARRAYS if name not in arrays]
            if absent:
                raise KeyError(f'no {", ".join(absent)}')
        except Exception as exception:
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'{ERRORS_FILE}: {exception}')

        expected = self.node.inputs.reference.n_frames
        lengths = {name: len(array) for name, array in arrays.items()}
        if any(length != expected for length in lengths.values()) or metrics['n_frames'] != expected:
            return self.exit_codes.ERROR_FRAME_COUNT_MISMATCH.format(
                message=f'{expected} reference frames; array lengths {lengths}, n_frames {metrics["n_frames"]}'
            )

        errors = orm.ArrayData()
        for name, array in arrays.items():
            errors.set_array(name, array)
        self.out('errors', errors)
        self.out('metrics', orm.Dict(metrics))
        return None
