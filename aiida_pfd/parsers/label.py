"""Parser of ``pfd.label``: the ``labelled/`` deepmd/npy folder becomes the output ``dataset``."""

from __future__ import annotations

import json

from aiida.common.links import LinkType
from aiida.engine import ExitCode

from ..scripts.label import LABELLED_DIR, SUMMARY_FILE
from .script import ScriptParser


class LabelParser(ScriptParser):
    """Output ``dataset`` (``pfd.dataset`` with energies, forces and virials, the model's type map)."""

    def parse_outputs(self, stopped: bool) -> ExitCode | None:
        if stopped:
            return None  # the script writes nothing before it stops; the exit code of error.json applies
        missing = self.missing(LABELLED_DIR, SUMMARY_FILE)
        if missing:
            return self.missing_output(missing)

        try:
            summary = json.loads(self.retrieved.base.repository.get_object_content(SUMMARY_FILE))
            n_frames, type_map = int(summary['n_frames']), list(summary['type_map'])
        except (ValueError, KeyError, TypeError) as exception:
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'{SUMMARY_FILE}: {exception}')

        try:
            dataset = self.read_dataset(LABELLED_DIR, type_map)
        except Exception as exception:
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'{LABELLED_DIR}/: {exception}')
        if not dataset.is_labelled:
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'{LABELLED_DIR}/ holds unlabelled frames')

        expected = self.input_frames()
        if dataset.n_frames != expected or n_frames != expected:
            return self.exit_codes.ERROR_FRAME_COUNT_MISMATCH.format(
                message=f'{expected} input frames, {dataset.n_frames} in {LABELLED_DIR}/, {n_frames} in {SUMMARY_FILE}'
            )
        self.out('dataset', dataset)
        return None

    def input_frames(self) -> int:
        """Number of input frames: those of the ``dataset`` input, or the number of ``structures``."""
        incoming = self.node.base.links.get_incoming(link_type=LinkType.INPUT_CALC)
        labels = incoming.all_link_labels()
        if 'dataset' in labels:
            return incoming.get_node_by_label('dataset').n_frames
        return sum(1 for label in labels if label.startswith('structures__'))
