"""Learning curves of training jobs: one array per column, and where the training loss stops being finite."""

from __future__ import annotations

import numpy as np
from aiida import orm


def learning_curve(columns: list[str], values: np.ndarray) -> orm.ArrayData:
    """An ``ArrayData`` with one array per column of ``values``; the column names as the attribute ``columns``."""
    curve = orm.ArrayData()
    for index, column in enumerate(columns):
        curve.set_array(column, values[:, index])
    curve.base.attributes.set('columns', list(columns))
    return curve


def first_non_finite(values: np.ndarray, columns: list[int]) -> int | None:
    """Index of the first row whose ``columns`` hold a NaN or infinity, or ``None``."""
    finite = np.isfinite(values[:, columns]).all(axis=1)
    return None if finite.all() else int(np.argmin(finite))
