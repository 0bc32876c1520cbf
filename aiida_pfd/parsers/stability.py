"""Parser of ``pfd.stability``: ``results.json`` becomes ``results``, the thermo logs ``thermo``."""

from __future__ import annotations

import json

import numpy as np
from aiida import orm
from aiida.engine import ExitCode

from ..scripts.stability import RESULTS_FILE, THERMO_COLUMNS, THERMO_DIR
from .script import ScriptParser


class StabilityParser(ScriptParser):
    """Outputs ``results`` and ``thermo``, also when the model failed a check (the script then names exit 400)."""

    def parse_outputs(self, stopped: bool) -> ExitCode | None:
        missing = self.missing(RESULTS_FILE)
        if missing:
            return None if stopped else self.missing_output(missing)
        repository = self.retrieved.base.repository
        try:
            results = json.loads(repository.get_object_content(RESULTS_FILE))
            runs = results['runs']
            thermo = orm.ArrayData()
            for run in runs:
                name = f'run.{run["index"]:03d}'
                with repository.open(f'{THERMO_DIR}/{name}.dat') as handle:
                    rows = np.loadtxt(handle, ndmin=2)
                if rows.shape[1] != len(THERMO_COLUMNS):
                    raise ValueError(f'{name}: {rows.shape[1]} columns instead of {len(THERMO_COLUMNS)}')
                thermo.set_array(name.replace('.', '_'), rows)
        except (OSError, ValueError, KeyError, TypeError) as exception:
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'{exception}')
        thermo.base.attributes.set('columns', list(THERMO_COLUMNS))
        self.out('results', orm.Dict(results))
        self.out('thermo', thermo)
        return None
