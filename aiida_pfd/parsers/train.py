"""Parser of ``pfd.deepmd.train``."""

from __future__ import annotations

import re

import numpy as np
from aiida import orm
from aiida.parsers import Parser

from ..backends import deepmd
from ..calculations.train import COMPRESS_LOG, FREEZE_LOG, compress_options
from ..data import ModelData
from .curves import first_non_finite, learning_curve

NAN_DETECTED = re.compile(r'NaN detected at batch\s+(\d+)')


def _tail(text: str, lines: int = 4) -> str:
    return ' | '.join(line.strip() for line in text.strip().splitlines()[-lines:])


class DeepmdTrainParser(Parser):
    """Attach the model for inference (frozen ``.pth`` or ``.pt2``, or the checkpoint with ``settings.freeze``
    False) and its compressed copy, the last checkpoint, the learning curve and the final RMSEs."""

    def parse(self, **kwargs):
        repository = self.retrieved.base.repository
        names = set(repository.list_object_names())
        log_name = self.node.get_option('output_filename')
        log = repository.get_object_content(log_name) if log_name in names else ''

        diverged = NAN_DETECTED.search(log)  # deepmd-kit stops on a NaN loss before lcurve.out shows it
        if diverged:
            return self.exit_codes.ERROR_NON_FINITE_LOSS.format(step=int(diverged.group(1)))
        if deepmd.LCURVE not in names:
            if 'Traceback' in log or 'Error' in log:
                return self.exit_codes.ERROR_TRAINING_FAILED.format(message=_tail(log))
            return self.exit_codes.ERROR_MISSING_LCURVE

        try:
            columns, values = deepmd.read_lcurve(repository.get_object_content(deepmd.LCURVE))
        except ValueError as exception:
            return self.exit_codes.ERROR_INVALID_LCURVE.format(message=str(exception))
        self.out('learning_curve', learning_curve(columns, values))

        # Validation columns may be NaN by design (no reference data); the training loss never may.
        loss_columns = [index for index, column in enumerate(columns) if column.startswith('rmse_trn')]
        row = first_non_finite(values, loss_columns)
        if row is not None:
            return self.exit_codes.ERROR_NON_FINITE_LOSS.format(step=int(values[row, 0]))
        last = values[-1]
        # No validation data gives NaN validation columns: stored as None (the database takes no NaN).
        metrics = {column: float(v) if np.isfinite(v) else None for column, v in zip(columns, last)}
        metrics['step'] = int(metrics['step'])
        metrics['units'] = {'rmse_e': 'eV/atom', 'rmse_f': 'eV/Å', 'rmse_v': 'eV/atom'}
        self.out('metrics', orm.Dict(metrics))

        checkpoints = sorted(
            (name for name in names if re.fullmatch(r'model\.ckpt-\d+\.pt', name)),
            key=lambda name: int(re.findall(r'\d+', name)[-1]),
        )
        settings = self.node.inputs.settings.get_dict() if 'settings' in self.node.inputs else {}
        frozen = next((name for name in (deepmd.FROZEN_MODEL, deepmd.FROZEN_MODEL_PT2) if name in names), None)
        if not settings.get('freeze', True):
            frozen = checkpoints[-1] if checkpoints else None
        missing = [label for label, ok in (('frozen model', frozen), ('checkpoint', checkpoints)) if not ok]
        if missing:
            freeze_log = repository.get_object_content(FREEZE_LOG) if FREEZE_LOG in names else ''
            return self.exit_codes.ERROR_MISSING_MODEL.format(message=f'{", ".join(missing)}; {_tail(freeze_log)}')
        try:
            for port, name in (('model', frozen), ('checkpoint', checkpoints[-1])):
                with repository.open(name, 'rb') as handle:
                    self.out(port, ModelData(handle, filename=name))
        except ValueError as exception:
            return self.exit_codes.ERROR_INVALID_MODEL.format(message=str(exception))
        return self.parse_compressed(repository, names)

    def parse_compressed(self, repository, names: set[str]):
        """Attach ``compressed_model`` when compression was asked for; exit 304 when it is missing or unreadable."""
        settings = self.node.inputs.settings.get_dict() if 'settings' in self.node.inputs else {}
        if compress_options(settings) is None:
            return None
        if deepmd.COMPRESSED_MODEL not in names:
            compress_log = repository.get_object_content(COMPRESS_LOG) if COMPRESS_LOG in names else ''
            return self.exit_codes.ERROR_COMPRESSION_FAILED.format(
                message=f'no {deepmd.COMPRESSED_MODEL}; {_tail(compress_log) or "no compress.log"}'
            )
        try:
            with repository.open(deepmd.COMPRESSED_MODEL, 'rb') as handle:
                self.out('compressed_model', ModelData(handle, filename=deepmd.COMPRESSED_MODEL))
        except ValueError as exception:
            return self.exit_codes.ERROR_COMPRESSION_FAILED.format(message=str(exception))
        return None
