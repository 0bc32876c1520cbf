"""Parser of ``pfd.sevenn.train``."""

from __future__ import annotations

import pathlib
import re

import numpy as np
from aiida import orm
from aiida.parsers import Parser

from ..backends import sevenn
from ..data import ModelData
from .curves import first_non_finite, learning_curve

_CHECKPOINT = re.compile(r'checkpoint_(\d+)\.pth')
_EXCEPTION = re.compile(r'^[\w.]*(Error|Exception|Interrupt)(: .*)?$', re.MULTILINE)


def failure_message(stdout: str, log: str) -> str | None:
    """The error ``sevenn train`` stopped with (a Python exception or sevenn's own report), or None."""
    if 'Traceback' in stdout:
        exceptions = [match.group(0).strip() for match in _EXCEPTION.finditer(stdout)]
        return exceptions[-1] if exceptions else ' | '.join(stdout.strip().splitlines()[-3:])
    for marker in ('Error occurred!', 'Unknown error occurred!', 'Failed to parsing input.yaml'):
        if marker in log:
            return ' | '.join(line.strip() for line in log[log.index(marker) :].strip().splitlines()[:3])
    return None


class SevennTrainParser(Parser):
    """Attach the learning curve, the final errors and the fine-tuned checkpoint."""

    def parse(self, **kwargs):
        repository = self.retrieved.base.repository
        names = set(repository.list_object_names())

        def read(name: str) -> str:
            return repository.get_object_content(name) if name in names else ''

        failure = failure_message(read(self.node.get_option('output_filename')), read(sevenn.LOG))
        if sevenn.LEARNING_CURVE not in names:
            if failure:
                return self.exit_codes.ERROR_TRAINING_FAILED.format(message=failure)
            return self.exit_codes.ERROR_MISSING_LEARNING_CURVE

        try:
            columns, values = sevenn.read_learning_curve(read(sevenn.LEARNING_CURVE))
        except ValueError as exception:
            return self.exit_codes.ERROR_INVALID_LEARNING_CURVE.format(message=str(exception))
        self.out('learning_curve', learning_curve(columns, values))

        training = [index for index, column in enumerate(columns) if column.startswith('trainset_')]
        row = first_non_finite(values, training)
        if row is not None:
            return self.exit_codes.ERROR_NON_FINITE_LOSS.format(epoch=int(values[row, 0]))
        if failure:  # crashed after some epochs
            return self.exit_codes.ERROR_TRAINING_FAILED.format(message=failure)

        metrics, units = sevenn.metrics_of_row(columns, values[-1])

        checkpoints = self._checkpoints(kwargs.get('retrieved_temporary_folder'))
        last_epoch = metrics['epoch']
        chosen = sevenn.BEST_CHECKPOINT if sevenn.BEST_CHECKPOINT in checkpoints else sevenn.checkpoint_name(last_epoch)
        if chosen not in checkpoints:
            found = ', '.join(sorted(checkpoints)) or 'none'
            return self.exit_codes.ERROR_MISSING_MODEL.format(
                message=f'no {sevenn.BEST_CHECKPOINT} or {sevenn.checkpoint_name(last_epoch)} (found: {found}).'
            )
        try:
            source = checkpoints[chosen]
            if isinstance(source, pathlib.Path):
                model = ModelData(source, model_backend='sevenn', filename=chosen)
            else:
                with source() as handle:
                    model = ModelData(handle, model_backend='sevenn', filename=chosen)
        except ValueError as exception:
            return self.exit_codes.ERROR_INVALID_MODEL.format(message=str(exception))

        model_epoch = model.base.attributes.get('epoch')
        metrics.update({'model_epoch': model_epoch, 'model_file': chosen, 'units': units})
        rows = np.flatnonzero(values[:, 0] == model_epoch) if model_epoch is not None else []
        if len(rows):
            metrics['at_model_epoch'] = sevenn.metrics_of_row(columns, values[rows[0]])[0]
        self.out('metrics', orm.Dict(metrics))
        self.out('model', model)
        return None

    def _checkpoints(self, temporary_folder: str | None) -> dict:
        """The retrieved checkpoints, ``{file name: path in the temporary folder, or opener of a retrieved file}``."""
        found = {}
        repository = self.retrieved.base.repository
        for name in repository.list_object_names():
            if name == sevenn.BEST_CHECKPOINT or _CHECKPOINT.fullmatch(name):
                found[name] = lambda name=name: repository.open(name, 'rb')
        if temporary_folder:
            for path in pathlib.Path(temporary_folder).iterdir():
                if path.name == sevenn.BEST_CHECKPOINT or _CHECKPOINT.fullmatch(path.name):
                    found[path.name] = path
        return found
