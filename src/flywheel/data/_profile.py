"""Reference profiles: a compact, exact summary of a data set to compare later data against.

Numeric and datetime columns keep quantile bin edges and exact counts per bin; categorical and
boolean columns keep exact counts per category (the most frequent ones, the rest pooled). Any
later data set is binned the same way with :meth:`ReferenceProfile.bin_counts` in one vectorized
pass per column, so drift statistics compare counts with counts.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from flywheel.core.errors import DataError
from flywheel.core.workspace import atomic_write_text
from flywheel.data._fingerprint import fingerprint_frame
from flywheel.data._infer import category_strings
from flywheel.data._schema import DataSchema

OTHER = "__other__"
PROFILE_VERSION = 1


class ColumnProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["numeric", "categorical"]
    count: int = Field(ge=0)
    """Non-null values."""
    nulls: int = Field(ge=0)
    edges: list[float] | None = None
    """Numeric: interior bin edges; bins are (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    counts: list[int]
    """Numeric: values per bin (len(edges) + 1). Categorical: per category, in `categories`
    order."""
    categories: list[str] | None = None
    """Categorical: the kept categories; everything else is counted under __other__ (last)."""
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None

    @property
    def null_rate(self) -> float:
        total = self.count + self.nulls
        return self.nulls / total if total else 0.0


class ReferenceProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = PROFILE_VERSION
    rows: int
    fingerprint: str
    created: str
    columns: dict[str, ColumnProfile]

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        path = Path(path)
        try:
            return cls.model_validate_json(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the reference profile ({exc}).", path=path) from exc

    def bin_counts(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Counts of ``frame``'s values in this profile's bins, column by column.

        Columns missing from ``frame`` are left out. Nulls are not counted (see ``nulls``).
        """
        out: dict[str, np.ndarray] = {}
        for name, col in self.columns.items():
            if name in frame.columns:
                out[name] = _bin(frame[name], col)
        return out


def profile_frame(frame: pd.DataFrame, schema: DataSchema | None = None, *, bins: int = 20,
                  max_categories: int = 50) -> ReferenceProfile:
    """Profile every column of ``frame`` (the schema, when given, decides numeric or not)."""
    columns = {}
    for name in frame.columns:
        s = frame[name]
        kind = schema.columns[name].kind if schema is not None and name in schema.columns \
            else None
        numeric = kind in ("numeric", "integer", "datetime") if kind else (
            pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        ) or pd.api.types.is_datetime64_any_dtype(s)
        if numeric:
            columns[name] = _numeric_profile(_as_float(s), bins)
        else:
            columns[name] = _categorical_profile(s, max_categories)
    return ReferenceProfile(
        rows=len(frame), fingerprint=fingerprint_frame(frame),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), columns=columns,
    )


def _numeric_profile(values: pd.Series, bins: int) -> ColumnProfile:
    finite = values.to_numpy(dtype=float)
    nulls = int(np.isnan(finite).sum())
    finite = finite[~np.isnan(finite)]
    if len(finite) == 0:
        return ColumnProfile(kind="numeric", count=0, nulls=nulls, edges=[], counts=[0])
    qs = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(qs)
    counts = np.bincount(np.searchsorted(edges, finite, side="left"), minlength=len(edges) + 1)
    return ColumnProfile(
        kind="numeric", count=len(finite), nulls=nulls, edges=edges.tolist(),
        counts=counts.tolist(), min=float(finite.min()), max=float(finite.max()),
        mean=float(finite.mean()), std=float(finite.std()),
    )


def _categorical_profile(s: pd.Series, max_categories: int) -> ColumnProfile:
    text = category_strings(s)
    counts = text.value_counts(dropna=True)
    kept = counts.head(max_categories)
    other = int(counts.iloc[max_categories:].sum())
    return ColumnProfile(kind="categorical", count=int(counts.sum()), nulls=int(text.isna().sum()),
                         categories=[str(c) for c in kept.index],
                         counts=[*map(int, kept.to_numpy()), other])


def _bin(s: pd.Series, col: ColumnProfile) -> np.ndarray:
    if col.kind == "numeric":
        values = _as_float(s).to_numpy(dtype=float)
        values = values[~np.isnan(values)]
        edges = np.asarray(col.edges or [], dtype=float)
        return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    cats = col.categories or []
    codes = pd.Categorical(category_strings(s).dropna(), categories=cats).codes
    counts = np.bincount(np.where(codes < 0, len(cats), codes), minlength=len(cats) + 1)
    return counts


def _as_float(s: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.astype("int64").where(s.notna()) / 1e9
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float)
    if not pd.api.types.is_numeric_dtype(s):
        parsed = pd.to_datetime(s, errors="coerce", utc=True, format="ISO8601")
        if parsed.notna().sum() == s.notna().sum():
            return parsed.astype("int64").where(parsed.notna()) / 1e9
        return pd.to_numeric(s, errors="coerce")
    return s.astype(float)
