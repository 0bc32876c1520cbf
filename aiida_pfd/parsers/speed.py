"""Parser of ``pfd.speed``: ``speed.json`` becomes the ``speed`` Dict, once every list is checked to have one entry
per size."""

from __future__ import annotations

import json

from aiida import orm
from aiida.engine import ExitCode

from ..calculations.speed import DEFAULTS
from ..scripts.speed import SPEED_FILE
from .script import ScriptParser

KEYS = ('n_atoms', 'repetitions', 'models', 'baseline', 'speedup', 'threads', 'cpu_count', 'units')
#: Lists of each model's entry, one item per size.
MODEL_LISTS = ('median_step_seconds', 'ms_per_atom_step', 'step_seconds')


class SpeedParser(ScriptParser):
    """Outputs ``speed`` (per size and model: step times, ms per atom-step, speedup over the baseline)."""

    def parse_outputs(self, stopped: bool) -> ExitCode | None:
        if stopped:
            return None
        missing = self.missing(SPEED_FILE)
        if missing:
            return self.missing_output(missing)
        try:
            speed = json.loads(self.retrieved.base.repository.get_object_content(SPEED_FILE))
            absent = [key for key in KEYS if key not in speed]
            if absent:
                raise KeyError(f'no {", ".join(absent)}')
            problem = self.check_lengths(speed)
        except (ValueError, KeyError, TypeError, AttributeError) as exception:
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'{SPEED_FILE}: {exception}')
        if problem:
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'{SPEED_FILE}: {problem}')
        self.out('speed', orm.Dict(speed))
        return None

    def check_lengths(self, speed: dict) -> str | None:
        """What is wrong with the shape of ``speed``: the models are not the input models, or a list does not have
        one entry per size of ``parameters``; None if nothing."""
        parameters = self.node.inputs.parameters.get_dict() if 'parameters' in self.node.inputs else {}
        n_sizes = len(parameters.get('sizes', DEFAULTS['sizes']))
        names = sorted(self.node.inputs.models) if 'models' in self.node.inputs else sorted(speed['models'])
        if sorted(speed['models']) != names or sorted(speed['speedup']) != names:
            return f'models {sorted(speed["models"])} and speedup {sorted(speed["speedup"])} are not the inputs {names}'
        lists = {'n_atoms': speed['n_atoms'], 'repetitions': speed['repetitions']}
        for name in names:
            lists |= {f'models.{name}.{key}': speed['models'][name][key] for key in MODEL_LISTS}
            lists[f'speedup.{name}'] = speed['speedup'][name]
        wrong = {key: len(value) for key, value in lists.items() if len(value) != n_sizes}
        if wrong:
            return f'{n_sizes} sizes, but the lists {wrong} have other lengths'
        return None
