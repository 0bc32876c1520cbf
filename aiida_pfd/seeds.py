"""One user-level seed from which every random choice of a workflow derives, each under its own name."""

from __future__ import annotations

import zlib

import numpy as np


def derive_seed(seed: int, *keys: str | int) -> int:
    """A seed in [0, 2**31) for the random choice named by ``keys`` (e.g. ``('md', 2, 0)``), derived from ``seed``.

    The same ``seed`` and ``keys`` always give the same value; different keys give independent streams
    (``numpy.random.SeedSequence``).
    """
    words = [int(seed)] + [key if isinstance(key, int) else zlib.crc32(str(key).encode()) for key in keys]
    return int(np.random.SeedSequence(words).generate_state(1)[0] >> 1)


def sample_indices(n: int, k: int, seed: int) -> list[int]:
    """``k`` distinct indices of ``range(n)`` drawn with ``numpy.random.default_rng(seed)``, sorted."""
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n, k, replace=False))
