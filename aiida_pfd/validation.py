"""Helpers of the port validators: messages that name the port and, for a misspelt key, the key meant."""

from __future__ import annotations

import difflib
import typing as t


def did_you_mean(key, allowed: t.Iterable[str]) -> str | None:
    """The allowed key closest to ``key`` (:func:`difflib.get_close_matches`), or None if none is close."""
    matches = difflib.get_close_matches(str(key), sorted(str(name) for name in allowed), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_keys(port: str, given: t.Iterable, allowed: t.Iterable[str], hint: str = '') -> str | None:
    """What is wrong with the keys ``given`` to the Dict input ``port`` if some are not ``allowed``, or None.

    E.g. ``selection: unknown key `max_frame`; did you mean `max_frames`? Allowed: ...``. ``hint`` is appended; with
    ``port`` empty the message starts at ``unknown key``.
    """
    prefix = f'{port}: ' if port else ''
    allowed = sorted(set(allowed))
    unknown = sorted((key for key in given if key not in allowed), key=str)
    if not unknown:
        return None
    if len(unknown) == 1:
        key = unknown[0]
        close = did_you_mean(key, allowed)
        message = f'{prefix}unknown key `{key}`' + (f'; did you mean `{close}`?' if close else '.')
    else:
        named = []
        for key in unknown:
            close = did_you_mean(key, allowed)
            named.append(f'`{key}`' + (f' (did you mean `{close}`?)' if close else ''))
        message = f'{prefix}unknown keys {", ".join(named)}.'
    message += ' Allowed: ' + ', '.join(f'`{key}`' for key in allowed) + '.'
    return f'{message} {hint}' if hint else message


def check_structures(port: str, structures: t.Mapping) -> str | None:
    """What is wrong with the namespace ``port`` of ``StructureData`` (empty, a structure without sites), or None."""
    if not structures:
        return f'{port}: give at least one structure (a StructureData keyed by name); the namespace is empty.'
    empty = sorted(name for name, structure in structures.items() if not structure.sites)
    if empty:
        return f'{port}: {empty} have no sites: give structures with at least one atom.'
    return None


def check_option_kinds(options, kinds: t.Iterable[str]) -> str | None:
    """What is wrong with an ``options`` input (``metadata.options`` per job kind), or None."""
    if options is None:
        return None
    return unknown_keys('options', options.get_dict(), kinds, hint='(`metadata.options` per job kind.)')
