"""Request values to what the converters in ``_convert.py`` make of them, one value at a time.

For any single value, each ``read_*`` function returns exactly what the matching converter returns
for a one-row DataFrame holding that value (``pd.DataFrame([record])``, the way a pipeline serves
one request). The plain JSON types (str, int, float, bool, None) take a fast path that was checked
against the converter; anything else goes through the converter itself, so an odd value never
raises and never reads differently.

The ``read_*_column`` functions map the same per-value reading over a column. A row's features
therefore never depend on the rows it is batched with. The converters, which see whole columns,
can differ here: a categorical float column is read as whole numbers only when every value in it is
whole (``415.0`` is ``"415"`` alone but ``"415.0"`` beside ``415.5``), and in a column that also
holds strings a ``True`` reads as ``"True"`` rather than ``"true"``.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from flywheel.features._convert import (
    _BOOL_WORDS,
    DATETIME_PARTS,
    MISSING,
    to_bool_floats,
    to_category_strings,
    to_datetime_parts,
    to_floats,
)

__all__ = [
    "max_abs_diff",
    "read_bool",
    "read_bool_column",
    "read_category",
    "read_category_column",
    "read_datetime",
    "read_datetime_column",
    "read_float",
    "read_float_column",
]

_NAN = math.nan
_NO_DATE = (_NAN,) * len(DATETIME_PARTS)
_INT64 = 2**63
_PLAIN_NUMBERS = frozenset({float, int, bool, type(None)})
_TEXT = frozenset({str})

# Strings that Python's float() and pandas' to_numeric read identically (checked on 100,000
# random decimal and scientific strings); anything else is left to pandas.
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_MAX_DECIMAL_CHARS = 40
_FRACTION = frozenset(".eE")

# ISO-8601 strings that datetime.fromisoformat and pandas' ISO8601 parser read identically: a date,
# optionally with a time and then an offset, in years pandas handles at any resolution.
_ISO_DATETIME = re.compile(
    r"(?:1[7-9]|2[0-2])\d\d-\d\d-\d\d"
    r"(?:[T ][0-2]\d:[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?(?:Z|[+-][0-2]\d:[0-5]\d)?)?",
    re.ASCII,
)
_UTC = dt.UTC


def read_float(value: Any) -> float:
    """One value as ``to_floats`` reads it: numbers, numeric text and booleans; else NaN."""
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int and -_INT64 <= value < _INT64:
        return float(value)
    if value is None:
        return _NAN
    if kind is str:
        if len(value) <= _MAX_DECIMAL_CHARS and _DECIMAL.fullmatch(value):
            # pandas reads digits alone as an integer, so "-0" is 0.0, not -0.0
            return float(value) if _FRACTION.intersection(value) else float(int(value))
        return _float_text(value)
    if kind is bool or isinstance(value, (float, np.integer, np.floating, np.bool_)):
        return float(value)
    return _via(to_floats, value, _NAN)  # type: ignore[no-any-return]


def read_bool(value: Any) -> float:
    """One value as ``to_bool_floats`` reads it: 1.0, 0.0, or NaN."""
    kind = type(value)
    if kind is bool:
        return 1.0 if value else 0.0
    if kind is str:
        return _BOOL_WORDS.get(value.strip().lower(), _NAN)
    if value is None:
        return _NAN
    if kind is int or isinstance(value, float):
        return _BOOL_WORDS.get(str(value), _NAN)  # pandas writes 1.0 as "1.0", like str()
    if isinstance(value, np.bool_):
        return 1.0 if value else 0.0
    return _via(to_bool_floats, value, _NAN)  # type: ignore[no-any-return]


def read_category(value: Any) -> str:
    """One value as ``to_category_strings`` reads it, missing values as ``MISSING``."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return MISSING
    if kind is int:
        return str(value)
    if isinstance(value, float):  # float64 too; not float32, which pandas writes its own way
        if value != value:
            return MISSING
        return str(int(value)) if value.is_integer() else str(float(value))
    if kind is bool or isinstance(value, np.bool_):
        return "true" if value else "false"
    if isinstance(value, np.integer):
        return str(int(value))
    try:
        return str(to_category_strings(pd.DataFrame({"value": [value]}))[0, 0])
    except Exception:  # serving never raises on a value; the pipeline might
        return str(value)


def read_datetime(value: Any) -> tuple[float, ...]:
    """One value as ``to_datetime_parts`` reads it: the ``DATETIME_PARTS`` in UTC, else NaNs."""
    if value is None:
        return _NO_DATE
    if type(value) is str:
        if _ISO_DATETIME.fullmatch(value):
            try:
                moment = dt.datetime.fromisoformat(value)
            except ValueError:  # a day or time out of range, like 2024-02-30; pandas decides
                return _datetime_text(value)
            return _parts(moment)
        return _datetime_text(value)
    if isinstance(value, dt.datetime) and value is not pd.NaT:  # also pd.Timestamp
        return _parts(value)
    return _via(to_datetime_parts, value, _NO_DATE, row=True)  # type: ignore[no-any-return]


def _parts(moment: dt.datetime) -> tuple[float, ...]:
    """``DATETIME_PARTS`` of ``moment`` in UTC; a naive moment is taken as UTC."""
    moment = moment.replace(tzinfo=_UTC) if moment.tzinfo is None else moment.astimezone(_UTC)
    return (float(moment.hour), float(moment.weekday()), float(moment.month), float(moment.day))


Column: TypeAlias = "Sequence[Any] | np.ndarray | pd.Series"


def read_float_column(values: Column) -> np.ndarray:
    """``read_float`` over a column, as float64; numeric arrays and lists convert in one step."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return values.astype(np.float64)
    if isinstance(values, pd.Series) and pd.api.types.is_numeric_dtype(values.dtype):
        return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan))
    items = _as_list(values)
    if _PLAIN_NUMBERS.issuperset(map(type, items)):
        try:
            return np.array(items, dtype=np.float64)  # None -> NaN, True -> 1.0
        except OverflowError:
            pass  # an integer beyond float range; read it like the converter does
    return np.fromiter(map(read_float, items), dtype=np.float64, count=len(items))


def read_bool_column(values: Column) -> np.ndarray:
    """``read_bool`` over a column, as float64."""
    if isinstance(values, (np.ndarray, pd.Series)) and values.dtype == np.bool_:
        return np.asarray(values, dtype=np.float64)
    items = _as_list(values)
    return np.fromiter(map(read_bool, items), dtype=np.float64, count=len(items))


def read_datetime_column(values: Column) -> np.ndarray:
    """``read_datetime`` over a column: shape (rows, len(DATETIME_PARTS)), float64."""
    if isinstance(values, pd.Series) and pd.api.types.is_datetime64_any_dtype(values.dtype):
        return to_datetime_parts(values.to_frame())
    items = _as_list(values)
    out = np.empty((len(items), len(DATETIME_PARTS)), dtype=np.float64)
    for i, value in enumerate(items):
        out[i] = read_datetime(value)
    return out


def read_category_column(values: Column) -> list[str]:
    """``read_category`` over a column."""
    items = _as_list(values)
    if _TEXT.issuperset(map(type, items)):
        return items
    return [read_category(v) for v in items]


def _as_list(values: Column) -> list[Any]:
    if isinstance(values, (np.ndarray, pd.Series)):
        items: list[Any] = values.tolist()
        return items
    return values if isinstance(values, list) else list(values)


def _via(convert: Callable[[Any], np.ndarray], value: Any, default: Any, *,
         row: bool = False) -> Any:
    """What ``convert`` makes of ``value`` alone in a one-row column; ``default`` if it raises."""
    try:
        out = convert(pd.DataFrame({"value": [value]}))
    except Exception:  # serving never raises on a value; the pipeline might
        return default
    return tuple(float(v) for v in out[0]) if row else float(out[0, 0])


# Text that needs pandas is rare (padded numbers, "1,5", dates in other layouts), but a client
# that always sends it would pay for a DataFrame per value; the caches bound that.
@functools.lru_cache(maxsize=4096)
def _float_text(text: str) -> float:
    return _via(to_floats, text, _NAN)  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=4096)
def _datetime_text(text: str) -> tuple[float, ...]:
    return _via(to_datetime_parts, text, _NO_DATE, row=True)  # type: ignore[no-any-return]


def max_abs_diff(expected: np.ndarray, got: np.ndarray) -> float:
    """The largest absolute difference between two prediction arrays, NaN where both are NaN
    counting as equal; infinite when the shapes differ or only one side is NaN."""
    if expected.shape != got.shape:
        return math.inf
    both_nan = np.isnan(expected) & np.isnan(got)
    diff = np.where(both_nan, 0.0, np.abs(expected - got))
    return float(np.nan_to_num(diff, nan=math.inf).max(initial=0.0))
