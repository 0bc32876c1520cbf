"""The result of one provisioning step."""

from __future__ import annotations

import dataclasses
import enum


class Status(enum.Enum):
    """What a provisioning step did."""

    CREATED = 'created'
    UNCHANGED = 'unchanged'
    STARTED = 'started'
    SKIPPED = 'skipped'
    WARNING = 'warning'

    @property
    def is_change(self) -> bool:
        return self in (Status.CREATED, Status.STARTED)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One row of the ``aiida-pfd setup`` summary table."""

    kind: str
    label: str
    status: Status
    detail: str = ''

    def as_row(self) -> tuple[str, str, str, str]:
        return (self.kind, self.label, self.status.value, self.detail)
