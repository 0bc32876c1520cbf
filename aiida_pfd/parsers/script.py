"""Base parser of :class:`~aiida_pfd.calculations.script.ScriptCalculation` jobs."""

from __future__ import annotations

import json
import pathlib
import tempfile
import typing as t

from aiida.engine import ExitCode
from aiida.parsers import Parser

from ..calculations.script import ERROR_FILE
from ..data import LabeledDataset


class ScriptParser(Parser):
    """Turns ``error.json`` into the exit code it names; subclasses implement :meth:`parse_outputs`."""

    def parse(self, **kwargs) -> ExitCode | None:
        retrieved = self.retrieved
        names = retrieved.base.repository.list_object_names()
        if ERROR_FILE in names:
            error = json.loads(retrieved.base.repository.get_object_content(ERROR_FILE))
            exit_code = self.exit_codes[error['exit_code']]
            outcome = self.parse_outputs(stopped=True)  # keep what the script produced before it stopped
            return exit_code.format(message=error.get('message', '')) if outcome is None else outcome
        return self.parse_outputs(stopped=False)

    def parse_outputs(self, stopped: bool) -> ExitCode | None:
        """Attach the outputs; ``stopped`` is True when the script ended early (outputs may be partial)."""
        raise NotImplementedError

    def missing(self, *names: str) -> list[str]:
        """Which of ``names`` (files or folders) the retrieved folder lacks."""
        present = set(self.retrieved.base.repository.list_object_names())
        return [name for name in names if pathlib.PurePosixPath(name).parts[0] not in present or not self._exists(name)]

    def _exists(self, name: str) -> bool:
        try:
            self.retrieved.base.repository.get_object(name)
        except FileNotFoundError:
            return False
        return True

    def missing_output(self, missing: t.Sequence[str]) -> ExitCode:
        """The exit code of a script that did not write ``missing``: ``ERROR_SCRIPT_FAILED`` with the last line of the
        Python traceback in the scheduler's standard error, if there is one, else ``ERROR_MISSING_OUTPUT``."""
        try:
            stderr = self.retrieved.base.repository.get_object_content(self.node.get_option('scheduler_stderr'))
        except (FileNotFoundError, TypeError):
            stderr = ''
        if 'Traceback (most recent call last)' in stderr:
            return self.exit_codes.ERROR_SCRIPT_FAILED.format(message=stderr.strip().splitlines()[-1])
        tail = self.stdout_tail()
        message = f'{", ".join(missing)} not found' + (f'; output ends with: {tail}' if tail else '')
        return self.exit_codes.ERROR_MISSING_OUTPUT.format(message=message)

    def stdout_tail(self, lines: int = 5) -> str:
        """The last lines of the script's standard output, for error messages."""
        filename = self.node.get_option('output_filename')
        try:
            text = self.retrieved.base.repository.get_object_content(filename)
        except FileNotFoundError:
            return ''
        return ' | '.join(text.strip().splitlines()[-lines:])

    def read_dataset(self, name: str, type_map: t.Sequence[str]) -> LabeledDataset:
        """The deepmd/npy systems of retrieved folder ``name`` as a ``pfd.dataset`` with ``type_map``."""
        with tempfile.TemporaryDirectory() as directory:
            self.retrieved.base.repository.copy_tree(directory, name)
            return LabeledDataset.from_deepmd_npy(directory, type_map=list(type_map))
