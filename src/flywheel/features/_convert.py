"""Raw column values to model-ready arrays: the stateless first step of each column group.

Each function takes the DataFrame slice a ``ColumnTransformer`` hands to its group and returns a
2-D numpy array, never raising on bad values: what cannot be read becomes missing (NaN, or
``MISSING`` for categories) for the next step to impute or encode. They run column by column,
never row by row, because serving calls them on single rows.

They are module-level functions so that ``FunctionTransformer`` can hold them and skops can
store them by name; ``CONVERTER_NAMES`` lists those names for skops' trusted types.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from flywheel.data import category_strings

__all__ = [
    "CONVERTER_NAMES",
    "DATETIME_PARTS",
    "MISSING",
    "datetime_feature_names",
    "to_bool_floats",
    "to_category_strings",
    "to_datetime_parts",
    "to_floats",
]

MISSING = "__missing__"
"""The category missing categorical values are encoded as."""

DATETIME_PARTS = ("hour", "day_of_week", "month", "day_of_month")
"""What a datetime column expands into, in output order (UTC)."""

_TRUE = ("true", "t", "yes", "y", "1", "1.0")
_FALSE = ("false", "f", "no", "n", "0", "0.0")
_BOOL_WORDS = {**dict.fromkeys(_TRUE, 1.0), **dict.fromkeys(_FALSE, 0.0)}


def to_floats(X: Any) -> np.ndarray:
    """Every column as float64; values that are not numbers become NaN."""
    frame = _as_frame(X)
    if all(pd.api.types.is_numeric_dtype(dtype) for dtype in frame.dtypes):
        return frame.to_numpy(dtype=np.float64, na_value=np.nan)  # clean data: one copy
    out = np.empty(frame.shape, dtype=np.float64)
    for i, (_, s) in enumerate(frame.items()):
        out[:, i] = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def to_category_strings(X: Any) -> np.ndarray:
    """Every column as an object array of strings, missing values as ``MISSING``.

    Uses ``flywheel.data.category_strings``, the normalization schema inference used, so the
    encoder's categories match the schema's (``415.0`` and ``415`` are both ``"415"``).
    """
    frame = _as_frame(X)
    out = np.empty(frame.shape, dtype=object)
    for i, (_, s) in enumerate(frame.items()):
        out[:, i] = category_strings(s).to_numpy(dtype=object, na_value=MISSING)
    return out


def to_bool_floats(X: Any) -> np.ndarray:
    """Every column as 1.0/0.0; true/false, yes/no, y/n, t/f, 1/0 in any case; else NaN."""
    frame = _as_frame(X)
    out = np.empty(frame.shape, dtype=np.float64)
    for i, (_, s) in enumerate(frame.items()):
        if pd.api.types.is_bool_dtype(s):
            out[:, i] = s.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            words = s.astype("string").str.strip().str.lower()
            out[:, i] = words.map(_BOOL_WORDS).to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def to_datetime_parts(X: Any) -> np.ndarray:
    """Each column expanded into ``DATETIME_PARTS`` (UTC), as float64; unparseable -> NaN.

    Accepts datetime64 values (naive ones are taken as UTC) and ISO-8601 strings. There is no
    raw timestamp feature: it would drift out of the training range by construction.
    """
    frame = _as_frame(X)
    out = np.empty((len(frame), len(DATETIME_PARTS) * frame.shape[1]), dtype=np.float64)
    for i, (_, s) in enumerate(frame.items()):
        ts = _utc_timestamps(s).dt
        parts = (ts.hour, ts.day_of_week, ts.month, ts.day)
        for j, part in enumerate(parts):
            out[:, i * len(DATETIME_PARTS) + j] = part.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def datetime_feature_names(transformer: Any, input_features: Sequence[str]) -> list[str]:
    """Output names of ``to_datetime_parts``: ``<column>_<part>``."""
    return [f"{name}_{part}" for name in input_features for part in DATETIME_PARTS]


def _utc_timestamps(s: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return pd.Series(s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC"))
    text = s.astype("string")
    return pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")


def _as_frame(X: Any) -> pd.DataFrame:
    return X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)


CONVERTER_NAMES = [
    f"{f.__module__}.{f.__qualname__}"
    for f in (to_floats, to_category_strings, to_bool_floats, to_datetime_parts,
              datetime_feature_names)
]
"""Fully-qualified names of the functions above, which fitted pipelines hold."""
