"""Parser of ``pfd.md.ase``: sampled frames, thermo logs and the task summary."""

from __future__ import annotations

import json
import warnings

import numpy as np
from aiida import orm
from aiida.engine import ExitCode

from ..calculations.md_ase import frames_type_map
from ..scripts.md_ase import FRAMES_DIR, TASKS_FILE, THERMO_COLUMNS, THERMO_DIR
from .script import ScriptParser


class AseMdParser(ScriptParser):
    """Attach ``tasks`` (Dict), ``thermo`` (ArrayData, one array per task) and ``frames`` (LabeledDataset).

    When the script stopped (``error.json``, e.g. an unstable task), what it wrote is attached and the exit code it
    named is returned; otherwise a missing ``tasks.json`` gives 301 (302 if the script raised), unreadable files 310
    and no sampled frame 320.
    """

    def parse_outputs(self, stopped: bool) -> ExitCode | None:
        missing = self.missing(TASKS_FILE)
        if missing:
            return None if stopped else self.missing_output(missing)

        try:
            summary = json.loads(self.retrieved.base.repository.get_object_content(TASKS_FILE))
            tasks = summary['tasks']
            names = [task['name'] for task in tasks]
            expected_frames = sum(task['n_frames'] for task in tasks)
        except (ValueError, KeyError, TypeError) as exception:
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'`{TASKS_FILE}`: {exception!r}')
        self.out('tasks', orm.Dict(summary))

        thermo = orm.ArrayData()
        for name in names:
            path = f'{THERMO_DIR}/{name}.dat'
            try:
                with self.retrieved.base.repository.open(path) as handle, warnings.catch_warnings():
                    warnings.simplefilter('ignore', UserWarning)  # a task unstable at step 0 has no rows
                    rows = np.loadtxt(handle, ndmin=2)
                rows = rows.reshape(-1, len(THERMO_COLUMNS)) if rows.size == 0 else rows
                if rows.shape[1] != len(THERMO_COLUMNS):
                    raise ValueError(f'{rows.shape[1]} columns instead of {len(THERMO_COLUMNS)}')
            except (OSError, ValueError) as exception:
                if stopped:
                    continue
                return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'`{path}`: {exception}')
            thermo.set_array(name.replace('.', '_'), rows)
        thermo.base.attributes.set('columns', list(THERMO_COLUMNS))
        self.out('thermo', thermo)

        if expected_frames == 0 or self.missing(FRAMES_DIR):
            if stopped:
                return None
            return self.exit_codes.ERROR_NO_FRAMES.format(message=f'{len(tasks)} tasks, `{FRAMES_DIR}` is empty')
        try:
            structures = self.node.inputs.structures if 'structures' in self.node.inputs else None
            frames = self.read_dataset(FRAMES_DIR, frames_type_map(self.node.inputs.model, structures))
        except (ValueError, OSError, KeyError, IndexError) as exception:
            if stopped:
                return None
            if 'no deepmd/npy system' in str(exception):
                return self.exit_codes.ERROR_NO_FRAMES.format(message=str(exception))
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'`{FRAMES_DIR}`: {exception}')
        if frames.n_frames != expected_frames:
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(
                message=f'`{FRAMES_DIR}` holds {frames.n_frames} frames, `{TASKS_FILE}` counts {expected_frames}'
            )
        self.out('frames', frames)
        return None
