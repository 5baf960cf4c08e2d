"""Content fingerprints of tables: the same content gives the same fingerprint."""

from __future__ import annotations

import hashlib

import pandas as pd


def fingerprint_frame(frame: pd.DataFrame) -> str:
    """A SHA-256 over column names, column types and every value, in row order.

    The same table read twice, or written to Parquet and read back, fingerprints the same;
    reordering rows or columns, or changing one value, changes it.
    """
    digest = hashlib.sha256()
    for name in frame.columns:
        column = frame[name]
        digest.update(f"{name}\x1f{_kind(column)}\x1e".encode())
        hashed = pd.util.hash_pandas_object(column, index=False, categorize=True)
        digest.update(hashed.to_numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def _kind(column: pd.Series) -> str:
    # Coarse types, so the same values stored as int64 or Int64, object or str hash alike.
    if pd.api.types.is_bool_dtype(column):
        return "bool"
    if pd.api.types.is_numeric_dtype(column):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(column):
        return "datetime"
    return "text"
