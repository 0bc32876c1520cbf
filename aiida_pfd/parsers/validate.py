"""Parser of ``pfd.validate``: ``results.json`` becomes ``properties``, ``rdf.npy`` the ``rdf`` arrays."""

from __future__ import annotations

import io
import json

import numpy as np
from aiida import orm
from aiida.engine import ExitCode

from ..scripts.validate import RDF_FILE, RESULTS_FILE
from .script import ScriptParser


class ValidateParser(ScriptParser):
    def parse_outputs(self, stopped: bool) -> ExitCode | None:
        missing = self.missing(RESULTS_FILE)
        if missing:
            return None if stopped else self.missing_output(missing)
        repository = self.retrieved.base.repository
        try:
            self.out('properties', orm.Dict(json.loads(repository.get_object_content(RESULTS_FILE))))
            if not self.missing(RDF_FILE):
                r, g = np.load(io.BytesIO(repository.get_object_content(RDF_FILE, mode='rb')))
                rdf = orm.ArrayData()
                rdf.set_array('r', r)
                rdf.set_array('g', g)
                self.out('rdf', rdf)
        except (ValueError, TypeError, OSError) as exception:
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=str(exception))
        return None
