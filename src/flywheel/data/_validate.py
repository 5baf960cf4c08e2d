"""The validation gate: data checked against the schema, with pandera as the engine.

Each check has a name and a severity from the spec (error, warning or off). Checks that judge
a rate (nulls, unseen categories, out-of-range values, duplicates) run as pandera checks that
also record what they saw, so a failure reports counts and example values without a second pass.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.engines import pandas_engine
from pandera.errors import SchemaErrors

from flywheel.core.spec import CheckSeverity, ValidationSpec
from flywheel.data._infer import category_strings
from flywheel.data._schema import ColumnSchema, DataSchema

TABLE = "(table)"
_EXAMPLES = 5


@dataclasses.dataclass(frozen=True)
class CheckFailure:
    """One failed check: where, which, how bad, and some offending values."""

    column: str | None
    check: str
    severity: str
    failed: int
    total: int
    detail: str
    examples: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return self.column if self.column is not None else TABLE

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "check": self.check, "severity": self.severity,
                "failed": self.failed, "total": self.total, "detail": self.detail,
                "examples": list(self.examples)}


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    """What the gate found in one data set."""

    source: str | None
    rows: int
    columns: int
    failures: tuple[CheckFailure, ...]

    @property
    def errors(self) -> list[CheckFailure]:
        return [f for f in self.failures if f.severity == "error"]

    @property
    def warnings(self) -> list[CheckFailure]:
        return [f for f in self.failures if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "source": self.source, "rows": self.rows, "columns": self.columns,
                "errors": len(self.errors), "warnings": len(self.warnings),
                "failures": [f.to_dict() for f in self.failures]}


class _Probe:
    """A rate check for pandera that remembers what it counted.

    ``offending`` maps the checked object to a boolean mask of offending entries; the check
    passes when their share is at most ``limit``.
    """

    def __init__(self, column: str | None, check: str, limit: float,
                 offending: Callable[[Any], pd.Series], describe: Callable[[int, int], str],
                 examples_of: Callable[[Any, pd.Series], pd.Series] | None = None) -> None:
        self.column, self.check, self.limit = column, check, limit
        self.offending, self.describe = offending, describe
        self.examples_of = examples_of or (lambda data, mask: data[mask])
        self.failed = self.total = 0
        self.passed: bool | None = None  # None: never ran (e.g. the column was missing)
        self.examples: tuple[str, ...] = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> _Probe:
        return self  # pandera copies schemas; the copy must report into this probe

    def __call__(self, data: Any) -> bool:
        mask = self.offending(data)
        self.total = len(mask)
        self.failed = int(mask.sum())
        self.passed = self.total == 0 or self.failed <= self.limit * self.total
        if not self.passed:
            self.examples = _examples(self.examples_of(data, mask))
        return self.passed

    def failure(self, severity: str) -> CheckFailure:
        return CheckFailure(self.column, self.check, severity, self.failed, self.total,
                            self.describe(self.failed, self.total), self.examples)


def validate_frame(frame: pd.DataFrame, schema: DataSchema,
                   spec: ValidationSpec | None = None, *, require_target: bool = True,
                   source: str | None = None) -> ValidationReport:
    """Check ``frame`` against ``schema``; never raises for bad data, reports it.

    Args:
        frame: The data to check.
        schema: The project's schema.
        spec: Limits and per-check severities; defaults apply when omitted.
        require_target: False for data without labels (production traffic).
        source: Where the data came from, for the report.
    """
    spec = spec or ValidationSpec()
    severity = spec.severity
    failures: list[CheckFailure] = []
    if len(frame) == 0:
        if severity.empty != "off":
            failures.append(CheckFailure(None, "empty", severity.empty, 0, 0,
                                         "the data has no rows", ()))
        return ValidationReport(source, 0, frame.shape[1], tuple(failures))

    expected = {n: c for n, c in schema.columns.items()
                if require_target or c.role != "target"}
    prepared = _prepare(frame, expected)
    probes: list[_Probe] = []
    columns = {name: _column(name, col, spec, probes) for name, col in expected.items()}
    table_checks = []
    if severity.duplicate_rows != "off":
        probe = _Probe(None, "duplicate_rows", spec.max_duplicate_rate,
                       lambda df: df.duplicated(),
                       lambda n, t: f"{n} of {t} rows repeat an earlier row "
                                    f"(limit {spec.max_duplicate_rate:.1%})",
                       lambda df, mask: df.index[mask.to_numpy()].to_series().map(
                           lambda i: f"row {i}"))
        probes.append(probe)
        table_checks.append(pa.Check(probe, name="duplicate_rows", ignore_na=False))
    engine = pa.DataFrameSchema(columns=columns, checks=table_checks,
                                strict=severity.extra_column != "off", coerce=False)
    try:
        engine.validate(prepared, lazy=True)
    except SchemaErrors as exc:
        failures.extend(_engine_failures(exc.failure_cases, expected, severity, len(frame)))
    failures.extend(p.failure(_severity(severity, p.check)) for p in probes if p.passed is False)
    if require_target:
        failures.extend(_target_failures(frame, schema, severity))
    failures = [f for f in failures if f.severity != "off"]
    failures.sort(key=lambda f: (f.severity != "error", f.where, f.check))
    return ValidationReport(source, len(frame), frame.shape[1], tuple(_unique(failures)))


def _prepare(frame: pd.DataFrame, expected: dict[str, ColumnSchema]) -> pd.DataFrame:
    """Normalize categorical columns to strings so ``415`` and ``"415"`` compare equal."""
    prepared = frame.copy(deep=False)
    for name, col in expected.items():
        if name in prepared.columns and col.kind == "categorical":
            prepared[name] = category_strings(prepared[name])
    return prepared


def _column(name: str, col: ColumnSchema, spec: ValidationSpec,
            probes: list[_Probe]) -> pa.Column:
    severity = spec.severity
    checks: list[pa.Check] = []

    def add(probe: _Probe) -> None:
        probes.append(probe)
        checks.append(pa.Check(probe, name=probe.check, ignore_na=False))

    if severity.null_rate != "off" and col.role != "target":
        add(_Probe(name, "null_rate", col.max_null_rate, lambda s: s.isna(),
                   lambda n, t: f"{n / t:.1%} missing ({n} of {t}), limit "
                                f"{col.max_null_rate:.1%}",
                   lambda s, mask: pd.Series(["<null>"])))
    if col.kind in ("numeric", "integer") and severity.out_of_range != "off" \
            and col.min is not None and col.max is not None:
        lo, hi = col.min, col.max
        add(_Probe(name, "out_of_range", spec.max_out_of_range_rate,
                   lambda s: (s < lo) | (s > hi),
                   lambda n, t: f"{n} of {t} values outside [{_num(lo)}, {_num(hi)}] "
                                f"(limit {spec.max_out_of_range_rate:.1%})"))
    if col.kind in ("categorical", "boolean") and col.categories is not None \
            and severity.unseen_category != "off":
        allowed = list(col.categories)
        add(_Probe(name, "unseen_category", spec.max_unseen_category_rate,
                   lambda s: s.notna() & ~category_strings(s).isin(allowed),
                   lambda n, t: f"{n / t:.1%} of rows ({n}) hold categories not in the schema "
                                f"(limit {spec.max_unseen_category_rate:.1%})",
                   lambda s, mask: category_strings(s)[mask]))
    if col.kind == "integer" and severity.dtype != "off":
        add(_Probe(name, "dtype", 0.0, lambda s: s.notna() & (np.mod(s, 1) != 0),
                   lambda n, t: f"{n} of {t} values are not whole numbers (kind: integer)"))
    dtype = _DTYPES.get(col.kind)
    return pa.Column(dtype, checks=checks, nullable=True, required=True,
                     coerce=dtype is not None and severity.dtype != "off")


_DTYPES: dict[str, Any] = {
    "numeric": "float64",
    "integer": "float64",
    "boolean": None,
    "categorical": None,
    "datetime": pandas_engine.DateTime(  # type: ignore[call-arg]
        tz=dt.UTC, to_datetime_kwargs={"format": "ISO8601", "utc": True}),
}


def _engine_failures(cases: pd.DataFrame, expected: dict[str, ColumnSchema],
                     severity: CheckSeverity, rows: int) -> list[CheckFailure]:
    """Translate pandera's own failures (presence, strictness, types) into CheckFailures."""
    out: list[CheckFailure] = []
    for check, group in cases.groupby("check", sort=False, dropna=False):
        check = str(check)
        if check == "column_in_dataframe":
            for name in group["failure_case"].astype(str).unique():
                role = expected[name].role if expected.get(name) else "feature"
                kind = "target" if role == "target" else "missing_column"
                if role not in ("feature", "target"):
                    # No model reads it (an id, a constant, a leak): its absence loses nothing,
                    # as in a retraining set built from the features the server logged.
                    out.append(CheckFailure(name, kind, "warning", 1, 1,
                                            f"column is in the schema (role {role}, not used by "
                                            "the model) but not in the data"))
                    continue
                out.append(CheckFailure(name, kind, _severity(severity, kind), 1, 1,
                                        "column is in the schema but not in the data"))
        elif check == "column_in_schema":
            for name in group["failure_case"].astype(str).unique():
                out.append(CheckFailure(name, "extra_column", severity.extra_column, 1, 1,
                                        "column is in the data but not in the schema"))
        elif check.startswith(("coerce_dtype", "dtype")):
            for name, per_column in group.groupby("column", dropna=False):
                name = str(name)
                col = expected.get(name)
                wanted = col.kind if col is not None else "?"
                bad = per_column["index"].notna().sum()
                failed = int(bad) if bad else rows
                out.append(CheckFailure(
                    name, "dtype", severity.dtype, failed, rows,
                    f"{failed} of {rows} values cannot be read as {wanted}",
                    _examples(per_column["failure_case"]),
                ))
    return out


def _target_failures(frame: pd.DataFrame, schema: DataSchema,
                     severity: CheckSeverity) -> list[CheckFailure]:
    name = schema.target
    if name not in frame.columns:
        return []  # reported by the engine as a missing target column
    y = frame[name]
    out = []
    nulls = int(y.isna().sum())
    if nulls:
        out.append(CheckFailure(name, "target", severity.target, nulls, len(y),
                                f"{nulls} of {len(y)} rows have no target value; drop them or "
                                "fill them in"))
    classes = int(y.nunique(dropna=True))
    if schema.task != "regression" and classes < 2:
        out.append(CheckFailure(name, "target", severity.target, len(y), len(y),
                                f"the target has {classes} class(es); training needs at least 2",
                                _examples(y.dropna().head(1))))
    return out


def _severity(severity: CheckSeverity, check: str) -> str:
    return str(getattr(severity, check))


def _examples(values: pd.Series | pd.Index) -> tuple[str, ...]:
    shown = pd.Series(values).drop_duplicates().head(_EXAMPLES)
    return tuple(_show(v) for v in shown)


def _show(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "<null>"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _num(value: float) -> str:
    return f"{value:g}"


def _unique(failures: list[CheckFailure]) -> list[CheckFailure]:
    seen, out = set(), []
    for f in failures:
        key = (f.column, f.check)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
