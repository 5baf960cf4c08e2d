"""Data quality of a production window against the schema: null rates, unseen categories,
out-of-range values per column, and the validation gate's own schema checks.

The rates are measured for every feature column (not only where a limit is broken), so they can
be charted and alerted on; the violations are the checks ``flywheel validate`` would fail or
warn about, with the same limits and severities, run without a target column.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from flywheel.core.spec import ValidationSpec
from flywheel.data import DataSchema, category_strings, validate_frame
from flywheel.monitoring._reference import as_numeric

__all__ = ["ColumnQuality", "QualityReport", "check_quality"]

_EXAMPLES = 5


@dataclasses.dataclass(frozen=True)
class ColumnQuality:
    """One feature column in the window; rates are shares of the window's rows (NaN when
    the column is missing)."""

    column: str
    present: bool
    null_rate: float
    max_null_rate: float
    unseen_rate: float | None = None
    unseen_examples: tuple[str, ...] = ()
    out_of_range_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"unseen_examples": list(self.unseen_examples)}


@dataclasses.dataclass(frozen=True)
class QualityReport:
    rows: int
    columns: tuple[ColumnQuality, ...]
    violations: tuple[dict[str, Any], ...]
    """The validation gate's failed checks (errors and warnings)."""

    @property
    def missing(self) -> list[str]:
        return [c.column for c in self.columns if not c.present]

    def metrics(self) -> dict[str, float]:
        present = [c for c in self.columns if c.present]

        def worst(values: list[float | None]) -> float:
            found = [v for v in values if v is not None and v == v]
            return max(found) if found else 0.0

        out = {
            "null_rate_max": worst([c.null_rate for c in present]),
            "null_rate_excess_max": max([c.null_rate - c.max_null_rate for c in present
                                         if c.null_rate == c.null_rate], default=0.0),
            "unseen_category_rate_max": worst([c.unseen_rate for c in present]),
            "out_of_range_rate_max": worst([c.out_of_range_rate for c in present]),
            "missing_columns": float(len(self.missing)),
            "schema_violations": float(sum(v["severity"] == "error" for v in self.violations)),
        }
        for c in present:
            out[f"null_rate.{c.column}"] = c.null_rate
        return out


def check_quality(frame: pd.DataFrame, schema: DataSchema,
                  validation: ValidationSpec | None = None) -> QualityReport:
    """Measure every feature column of ``frame`` against ``schema`` (never raises for bad
    data)."""
    rows = len(frame)
    columns = []
    for name in schema.feature_columns:
        col = schema.columns[name]
        if name not in frame.columns:
            columns.append(ColumnQuality(name, False, float("nan"), col.max_null_rate))
            continue
        s = frame[name]
        nulls = s.isna().to_numpy()
        null_rate = float(nulls.mean()) if rows else 0.0
        unseen_rate: float | None = None
        out_of_range: float | None = None
        examples: tuple[str, ...] = ()
        if col.kind in ("categorical", "boolean") and col.categories is not None and rows:
            text = category_strings(s)
            unseen = text.notna() & ~text.isin(list(col.categories))
            unseen_rate = float(unseen.mean())
            examples = tuple(str(v) for v in text[unseen].value_counts().index[:_EXAMPLES])
        elif col.kind in ("numeric", "integer") and rows and (col.min is not None
                                                              or col.max is not None):
            x = as_numeric(s)
            lo = col.min if col.min is not None else -np.inf
            hi = col.max if col.max is not None else np.inf
            with np.errstate(invalid="ignore"):
                out_of_range = float(np.mean((x < lo) | (x > hi)))
        columns.append(ColumnQuality(name, True, null_rate, col.max_null_rate, unseen_rate,
                                     examples, out_of_range))
    # Production windows carry the model's features only: ids and other non-feature columns
    # of the training data are not expected in them.
    features = schema.model_copy(update={"columns": {
        n: c for n, c in schema.columns.items() if c.is_feature}})
    inputs = frame[[c for c in frame.columns if c in features.columns]]
    report = validate_frame(inputs, features, validation, require_target=False,
                            source="monitoring window")
    violations = tuple(f.to_dict() for f in report.failures)
    return QualityReport(rows, tuple(columns), violations)
