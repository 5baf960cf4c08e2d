"""The monitoring reference: a model version's training data (and holdout predictions), kept
fine enough to reproduce exact drift statistics without keeping the rows.

A numeric column keeps every distinct value with its count while it has at most
``SUPPORT_LIMIT`` of them (most tabular columns: hours, temperatures in tenths, prices), so
Kolmogorov-Smirnov and Wasserstein computed against it equal the statistics on the raw rows.
Beyond that it keeps a quantile sketch of ``SUPPORT_LIMIT`` points (each an equal share of the
rows), which moves the KS statistic by at most 1/SUPPORT_LIMIT. A categorical column keeps exact
counts of up to ``CATEGORY_LIMIT`` categories, the rest pooled. A few thousand raw rows are kept
as well, for the domain classifier (multivariate drift), which needs joint values: they are
stored as Parquet, losslessly with their types, because a classifier told a rounded copy from the
real values by exact value (issue 13: ROC AUC 0.997 on training rows). References written before
that kept the sample as JSON with numbers rounded to 10 decimals (``sample_exact`` is False);
:func:`like_stored_sample` puts a window through the same rounding, so like meets like.

A column read as float32 is marked so: drift compares the window's values at float32 precision,
since the same number sent as JSON text (``0.221``) and read from a float32 file
(``0.22100000083446503``) are otherwise two different support points.

The permutation importance of each feature for the model (shares summing to 1) is kept too, so
the data-set drift verdict can weigh drifted columns by how much the model relies on them.

Versions trained before this reference existed have only the 20-bin data profile;
:func:`reference_from_profile` turns it into a coarser reference (``exact`` is False, and the
report says so).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from flywheel.core.errors import MonitoringError
from flywheel.data import DataSchema, ReferenceProfile, category_strings

__all__ = [
    "CategoricalReference",
    "ColumnReference",
    "MonitoringReference",
    "NumericReference",
    "as_numeric",
    "build_reference",
    "importance_shares",
    "like_stored_sample",
    "reference_from_profile",
]

SUPPORT_LIMIT = 4096
CATEGORY_LIMIT = 1000
PSI_BINS = 10
SAMPLE_ROWS = 5000
REFERENCE_VERSION = 2
_LEGACY_PRECISION = 10
"""Decimals pandas' ``to_json`` kept of each number in references of version 1."""

Role = Literal["feature", "target", "prediction"]
Kind = Literal["numeric", "categorical"]


@dataclasses.dataclass(frozen=True)
class NumericReference:
    """Reference values as a weighted sample: sorted support points and rows at each."""

    values: np.ndarray
    weights: np.ndarray
    count: int
    nulls: int
    mean: float
    std: float
    exact: bool
    psi_edges: np.ndarray
    """Interior edges of the PSI bins (reference deciles); bins are right-closed."""
    role: Role = "feature"
    kind: Kind = "numeric"
    bin_edges: np.ndarray | None = None
    """Set for a reference made from a binned profile: ``weights`` are rows per right-closed
    bin between these edges (``values`` the bins' middles), and KS is evaluated at the edges
    only, where the reference CDF is exact."""
    float32: bool = False
    """The training column was float32: compare windows at that precision."""

    @property
    def distinct(self) -> int | None:
        """Distinct values in the reference, when known exactly."""
        return len(self.values) if self.exact else None


@dataclasses.dataclass(frozen=True)
class CategoricalReference:
    """Reference counts per category (most frequent first); ``other`` pools the rest."""

    categories: tuple[str, ...]
    counts: np.ndarray
    other: int
    count: int
    nulls: int
    role: Role = "feature"
    kind: Kind = "categorical"


ColumnReference = NumericReference | CategoricalReference


@dataclasses.dataclass(frozen=True)
class MonitoringReference:
    """Every monitored column of one model version, and a small sample of raw feature rows.

    Attributes:
        sample_exact: False for a sample stored rounded (references of version 1); windows
            are then rounded alike before the domain classifier sees them.
        importance: Each feature's share of the model's permutation importance (summing to
            1), or None when it was not stored (older versions: equal weights).
    """

    columns: dict[str, ColumnReference]
    rows: int
    exact: bool = True
    sample: pd.DataFrame | None = None
    source: str = "training data"
    sample_exact: bool = True
    importance: Mapping[str, float] | None = None

    def role_of(self, column: str) -> Role:
        return self.columns[column].role

    def to_json(self) -> str:
        columns = {name: _column_dict(col) for name, col in self.columns.items()}
        sample = None
        if self.sample is not None:
            sample = base64.b64encode(_parquet_bytes(self.sample)).decode("ascii")
        importance = None if self.importance is None else dict(self.importance)
        return json.dumps({"version": REFERENCE_VERSION, "rows": self.rows, "exact": self.exact,
                           "source": self.source, "columns": columns,
                           "sample_parquet": sample, "importance": importance})

    @classmethod
    def from_json(cls, text: str) -> MonitoringReference:
        """Read what :meth:`to_json` wrote.

        Raises:
            MonitoringError: If the text is not a monitoring reference.
        """
        try:
            raw = json.loads(text)
            columns = {name: _column_from(col) for name, col in raw["columns"].items()}
            sample, exact = None, True
            if raw.get("sample_parquet"):
                sample = pd.read_parquet(io.BytesIO(base64.b64decode(raw["sample_parquet"])))
            elif raw.get("sample"):  # version 1: JSON, numbers rounded to 10 decimals
                sample = pd.read_json(io.StringIO(json.dumps(raw["sample"])), orient="split")
                exact = False
            importance = raw.get("importance")
            return cls(columns=columns, rows=int(raw["rows"]), exact=bool(raw["exact"]),
                       sample=sample, source=str(raw.get("source", "training data")),
                       sample_exact=exact,
                       importance=None if importance is None else
                       {str(k): float(v) for k, v in importance.items()})
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise MonitoringError(f"the stored monitoring reference cannot be read ({exc}); "
                                  "retrain the version to store a new one.") from exc


def as_numeric(values: pd.Series) -> np.ndarray:
    """Float values of a numeric, boolean or datetime column (datetimes as epoch seconds);
    text that is not a number becomes NaN."""
    if pd.api.types.is_datetime64_any_dtype(values):
        out = values.astype("int64").to_numpy(dtype=float) / 1e9
        return np.asarray(np.where(values.isna().to_numpy(), np.nan, out))
    if pd.api.types.is_bool_dtype(values):
        return np.asarray(values.to_numpy(dtype=float))
    if pd.api.types.is_numeric_dtype(values):
        return np.asarray(values.to_numpy(dtype=float, na_value=np.nan))
    numbers = pd.to_numeric(values, errors="coerce")
    return np.asarray(numbers.to_numpy(dtype=float, na_value=np.nan))


def like_stored_sample(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as a version-1 reference stored its sample: through pandas' JSON (numbers
    rounded to 10 decimals, types as ``read_json`` guesses them), so a window compares with
    such a sample like with like."""
    text = frame.reset_index(drop=True).to_json(orient="split", index=False, date_format="iso",
                                                double_precision=_LEGACY_PRECISION)
    return pd.read_json(io.StringIO(text), orient="split")


def importance_shares(importances: Mapping[str, float]) -> dict[str, float] | None:
    """Permutation importances (drops of the metric; noise can make them negative) as
    shares of their positive total; None when no column helps the model at all."""
    positive = {name: max(float(v), 0.0) for name, v in importances.items() if v == v}
    total = sum(positive.values())
    if total <= 0:
        return None
    return {name: v / total for name, v in positive.items()}


def build_reference(frame: pd.DataFrame, kinds: Mapping[str, Kind], *,
                    roles: Mapping[str, Role] | None = None,
                    sample_columns: list[str] | None = None,
                    sample_rows: int = SAMPLE_ROWS, seed: int = 0,
                    extra: Mapping[str, tuple[pd.Series, Kind, Role]] | None = None,
                    importance: Mapping[str, float] | None = None) -> MonitoringReference:
    """The reference of ``frame``'s columns named in ``kinds``.

    Args:
        kinds: numeric or categorical, per column to keep.
        roles: feature (default), target or prediction, per column.
        sample_columns: Columns of the raw-row sample for the domain classifier (default: the
            feature columns); at most ``sample_rows`` rows are drawn, seeded.
        extra: Columns from elsewhere (holdout predictions), as (values, kind, role).
        importance: Permutation importance per feature (see :func:`importance_shares`).
    """
    roles = roles or {}
    columns: dict[str, ColumnReference] = {}
    for name, kind in kinds.items():
        if name in frame.columns:
            columns[name] = column_reference(frame[name], kind, roles.get(name, "feature"))
    for name, (values, kind, role) in (extra or {}).items():
        columns[name] = column_reference(values, kind, role)
    if sample_columns is None:
        sample_columns = [n for n in kinds if roles.get(n, "feature") == "feature"
                          and n in frame.columns]
    sample = None
    if sample_columns and len(frame):
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(len(frame), size=min(sample_rows, len(frame)), replace=False))
        sample = frame.iloc[rows][sample_columns].reset_index(drop=True)
    return MonitoringReference(columns=columns, rows=len(frame), sample=sample,
                               importance=None if importance is None else
                               importance_shares(importance))


def column_reference(values: pd.Series, kind: Kind, role: Role = "feature") -> ColumnReference:
    """The reference of one column."""
    if kind == "numeric":
        ref = _numeric(as_numeric(values), role)
        if str(values.dtype).lower() == "float32":  # numpy's and pandas' nullable one
            ref = dataclasses.replace(ref, float32=True)
        return ref
    text = category_strings(values)
    counts = text.value_counts(dropna=True)
    kept = counts.head(CATEGORY_LIMIT)
    return CategoricalReference(
        categories=tuple(str(c) for c in kept.index), counts=kept.to_numpy(dtype=np.int64),
        other=int(counts.iloc[CATEGORY_LIMIT:].sum()), count=int(counts.sum()),
        nulls=int(text.isna().sum()), role=role)


def _numeric(x: np.ndarray, role: Role) -> NumericReference:
    finite = np.sort(x[np.isfinite(x)])
    nulls = len(x) - len(finite)
    n = len(finite)
    if n == 0:
        empty = np.array([], dtype=float)
        return NumericReference(empty, empty, 0, nulls, float("nan"), float("nan"), True,
                                empty, role)
    values, weights = distinct_counts(finite)
    exact = len(values) <= SUPPORT_LIMIT
    if not exact:  # an equal-mass quantile sketch, midpoints of SUPPORT_LIMIT slices
        picks = finite[((np.arange(SUPPORT_LIMIT) + 0.5) * n / SUPPORT_LIMIT).astype(np.int64)]
        values, counts = distinct_counts(picks)
        weights = counts * (n / SUPPORT_LIMIT)
    edges = np.unique(sorted_quantiles(finite, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
    return NumericReference(values=values, weights=weights.astype(float), count=n, nulls=nulls,
                            mean=float(finite.mean()), std=float(finite.std()), exact=exact,
                            psi_edges=edges, role=role)


def sorted_quantiles(sorted_values: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.quantile(values, q)`` (linear interpolation) of an already sorted array, without
    numpy's O(n) partition per call."""
    position = q * (len(sorted_values) - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, len(sorted_values) - 1)
    frac = position - low
    return np.asarray(sorted_values[low] + frac * (sorted_values[high] - sorted_values[low]))


def distinct_counts(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of an already sorted array and how often each occurs, in O(n)."""
    n = len(sorted_values)
    if n == 0:
        return sorted_values, np.array([], dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], sorted_values[1:] != sorted_values[:-1])))
    return sorted_values[starts], np.diff(np.append(starts, n))


def reference_from_profile(profile: ReferenceProfile, schema: DataSchema) -> MonitoringReference:
    """A coarse reference from a version's 20-bin data profile (versions trained before the
    monitoring reference was stored): each numeric bin's rows sit at the bin's middle."""
    columns: dict[str, ColumnReference] = {}
    for name, col in profile.columns.items():
        role: Role = "target" if name == schema.target else "feature"
        if name in schema.columns and schema.columns[name].role not in ("feature", "target"):
            continue
        if col.kind == "numeric":
            edges = np.asarray(col.edges or [], dtype=float)
            lo = col.min if col.min is not None else (edges[0] if len(edges) else 0.0)
            hi = col.max if col.max is not None else (edges[-1] if len(edges) else 0.0)
            bounds = np.concatenate(([lo], edges, [hi]))
            points = (bounds[:-1] + bounds[1:]) / 2
            columns[name] = NumericReference(
                values=points, weights=np.asarray(col.counts, dtype=float), count=col.count,
                nulls=col.nulls, mean=col.mean if col.mean is not None else float("nan"),
                std=col.std if col.std is not None else float("nan"), exact=False,
                psi_edges=edges, role=role, bin_edges=edges)
        else:
            columns[name] = CategoricalReference(
                categories=tuple(col.categories or []),
                counts=np.asarray(col.counts[:-1], dtype=np.int64), other=int(col.counts[-1]),
                count=col.count, nulls=col.nulls, role=role)
    return MonitoringReference(columns=columns, rows=profile.rows, exact=False,
                               source="20-bin data profile (approximate)")


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as Parquet; an object column Arrow cannot type (mixed Python types) is kept
    as its text, which is how the domain classifier reads such a column anyway."""
    buffer = io.BytesIO()
    try:
        frame.to_parquet(buffer, index=False)
    except (TypeError, ValueError, ImportError, ArithmeticError, RuntimeError):
        buffer = io.BytesIO()
        mixed = {c: frame[c].astype("string") for c in frame.columns if frame[c].dtype == object}
        frame.assign(**mixed).to_parquet(buffer, index=False)
    return buffer.getvalue()


def _column_dict(col: ColumnReference) -> dict[str, Any]:
    out = {k: v for k, v in dataclasses.asdict(col).items()}
    for key, value in out.items():
        if isinstance(value, np.ndarray):
            out[key] = value.tolist()
        elif isinstance(value, tuple):
            out[key] = list(value)
        elif isinstance(value, float) and value != value:
            out[key] = None
    return out


def _column_from(raw: dict[str, Any]) -> ColumnReference:
    if raw["kind"] == "numeric":
        return NumericReference(
            values=np.asarray(raw["values"], dtype=float),
            weights=np.asarray(raw["weights"], dtype=float), count=int(raw["count"]),
            nulls=int(raw["nulls"]), mean=_float(raw["mean"]), std=_float(raw["std"]),
            exact=bool(raw["exact"]), psi_edges=np.asarray(raw["psi_edges"], dtype=float),
            role=raw.get("role", "feature"), float32=bool(raw.get("float32", False)),
            bin_edges=None if raw.get("bin_edges") is None else np.asarray(raw["bin_edges"],
                                                                           dtype=float))
    return CategoricalReference(
        categories=tuple(raw["categories"]), counts=np.asarray(raw["counts"], dtype=np.int64),
        other=int(raw["other"]), count=int(raw["count"]), nulls=int(raw["nulls"]),
        role=raw.get("role", "feature"))


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)
