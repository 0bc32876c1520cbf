"""Base parser of :class:`~aiida_pfd.calculations.script.ScriptCalculation` jobs."""

from __future__ import annotations

import json
import pathlib
import tempfile

from aiida.engine import ExitCode
from aiida.parsers import Parser

from ..calculations.script import ERROR_FILE


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

    def stdout_tail(self, lines: int = 5) -> str:
        """The last lines of the script's standard output, for error messages."""
        filename = self.node.get_option('output_filename')
        try:
            text = self.retrieved.base.repository.get_object_content(filename)
        except FileNotFoundError:
            return ''
        return ' | '.join(text.strip().splitlines()[-lines:])

    def copy_folder(self, name: str) -> pathlib.Path:
        """Copy retrieved folder ``name`` to a temporary directory (removed at interpreter exit) and return it."""
        target = pathlib.Path(tempfile.mkdtemp(prefix='pfd-parse-'))
        self.retrieved.base.repository.copy_tree(target, name)
        return target
