"""Idempotent provisioning of an AiiDA profile for PFD: profile, computer, codes and pseudopotential family.

Every function returns a :class:`Outcome` that says what it did, so ``aiida-pfd setup`` can print a summary and a
second run can report that nothing changed.
"""

from .outcome import Outcome, Status

__all__ = ('Outcome', 'Status')
