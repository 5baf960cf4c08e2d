"""Inferring a project's task and data schema from a table."""

from __future__ import annotations

import difflib
import re

import numpy as np
import pandas as pd

from flywheel.core.errors import DataError
from flywheel.core.spec import Task
from flywheel.data._derived import SUSPECT_SCORE, near_deterministic_combinations
from flywheel.data._fingerprint import fingerprint_frame
from flywheel.data._schema import ColumnKind, ColumnSchema, DataSchema, Role

MIN_ROWS = 10
"""Fewer rows than this cannot support a schema (or a model)."""
MAX_CATEGORIES = 200
"""Categorical columns with more distinct values are kept open (any value allowed)."""
MAX_CLASSES = 50
LEAKAGE_SCORE = 0.99
"""A column that predicts the target this well on its own is flagged as likely leakage."""
_ID_NAME = re.compile(r"(^|_)(id|uuid|guid|key)$|^id", re.IGNORECASE)
_DATE_HINT = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


def infer_task(target: pd.Series) -> Task:
    """binary, multiclass or regression, judged from the target's values.

    Raises:
        DataError: If the target has fewer than two distinct values or too many labels.
    """
    values = target.dropna()
    n_unique = int(values.nunique())
    if n_unique < 2:
        raise DataError(
            f"target column {target.name!r} has {n_unique} distinct value(s); a prediction "
            "target needs at least two. Check the column name and the data."
        )
    if n_unique == 2:
        return "binary"
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        integral = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
        return "multiclass" if integral and n_unique <= 20 else "regression"
    if n_unique > MAX_CLASSES:
        raise DataError(
            f"target column {target.name!r} is text with {n_unique} distinct labels; flywheel "
            f"classifies up to {MAX_CLASSES} classes. Pass --task regression for a numeric "
            "target, or group the labels."
        )
    return "multiclass"


def infer_positive_class(target: pd.Series) -> str:
    """The label a binary task counts as positive: 1, true, yes, or else the rarer one."""
    counts = category_strings(target.dropna()).value_counts()  # as training encodes labels
    labels = set(counts.index)
    for positive in ("1", "True", "true", "yes", "Yes", "YES", "y", "Y", "positive", "pos"):
        if positive in labels:
            return positive
    return str(counts.index[-1])


def infer_schema(frame: pd.DataFrame, target: str, *, task: Task | None = None,
                 source: str | None = None) -> DataSchema:
    """Infer every column's kind, null limits, range, categories and role.

    Args:
        frame: The data, target included.
        target: Name of the target column.
        task: Overrides the inferred task.
        source: Where the data came from, recorded in the schema.

    Raises:
        DataError: If the target is missing, or the data has too few rows to infer from.
    """
    if target not in frame.columns:
        near = _nearest(target, list(frame.columns))
        raise DataError(f"target column {target!r} is not in the data{near}; columns are: "
                        f"{', '.join(map(str, frame.columns))}.")
    if len(frame) < MIN_ROWS:
        raise DataError(f"the data has {len(frame)} row(s); flywheel needs at least {MIN_ROWS} "
                        "to infer a schema and train a model.")
    task = task or infer_task(frame[target])
    y = frame[target]
    columns = {name: _infer_column(frame[name], name, target, task, y) for name in frame.columns}
    columns = _flag_near_determinants(frame, target, task, columns)
    return DataSchema(target=target, task=task, rows=len(frame), source=source,
                      fingerprint=fingerprint_frame(frame), columns=columns)


def _infer_column(s: pd.Series, name: str, target: str, task: Task, y: pd.Series) -> ColumnSchema:
    rows = len(s)
    nulls = int(s.isna().sum())
    null_rate = nulls / rows
    kind, parsed = _infer_kind(s)
    non_null = parsed.dropna()
    cardinality = int(non_null.nunique())
    lo = hi = None
    categories = None
    if kind in ("numeric", "integer") and len(non_null):
        lo, hi = float(non_null.min()), float(non_null.max())
    elif kind == "datetime" and len(non_null):
        lo, hi = (float(v) for v in _epoch_seconds(non_null).agg(["min", "max"]))
    elif kind in ("categorical", "boolean") and cardinality <= MAX_CATEGORIES:
        shares = category_strings(non_null).value_counts(normalize=True)
        categories = {str(k): round(float(v), 6) for k, v in shares.items()}
    role, reason = _infer_role(parsed, name, target, kind, cardinality, rows, task, y)
    return ColumnSchema(
        kind=kind, role=role, reason=reason, nullable=nulls > 0, null_rate=round(null_rate, 6),
        max_null_rate=_null_limit(null_rate), min=lo, max=hi, categories=categories,
        cardinality=cardinality,
    )


def _flag_near_determinants(frame: pd.DataFrame, target: str, task: Task,
                            columns: dict[str, ColumnSchema]) -> dict[str, ColumnSchema]:
    """Features that nearly determine the target, alone or two or three together, keep their
    role but get a ``reason`` saying so, for the user to confirm or drop (``role: ignore``)."""
    notes: dict[str, list[str]] = {}
    features = [name for name, col in columns.items() if col.is_feature]
    for name in features:
        if task == "regression" and columns[name].kind != "categorical":
            continue  # a rank correlation is no proof: carat and price; the R² search judges
        score = leakage_score(_parsed(frame[name], columns[name].kind), columns[name].kind, task,
                              frame[target])
        if score >= SUSPECT_SCORE:
            notes.setdefault(name, []).append(
                f"predicts {target} nearly on its own (score {score:.3f}); if it is derived from "
                f"{target}, it is not known at prediction time")
    for group, r2 in near_deterministic_combinations(frame, target, features, task=task):
        for name in group:
            notes.setdefault(name, []).append(
                f"{target} is almost exactly a function of {', '.join(group)} (out-of-sample R² "
                f"{r2:.4f}); if one of them is computed from {target}, it is not known at "
                "prediction time")
    if not notes:
        return columns
    suffix = "; drop it with role: ignore, or keep it if it is known when predicting"
    return {name: (col.model_copy(update={"reason": "; ".join(notes[name]) + suffix})
                   if name in notes else col) for name, col in columns.items()}


def _parsed(s: pd.Series, kind: ColumnKind) -> pd.Series:
    return _infer_kind(s)[1] if kind == "datetime" else s


def _null_limit(observed: float) -> float:
    """Room above the observed null rate before validation fails; none if there were none."""
    if observed == 0.0:
        return 0.0
    return round(min(1.0, observed + max(0.02, observed * 0.5)), 6)


def _infer_kind(s: pd.Series) -> tuple[ColumnKind, pd.Series]:
    if pd.api.types.is_bool_dtype(s):
        return "boolean", s
    if pd.api.types.is_datetime64_any_dtype(s):
        return "datetime", s
    if pd.api.types.is_numeric_dtype(s):
        if pd.api.types.is_integer_dtype(s):
            return "integer", s
        values = s.dropna().to_numpy(dtype=float)
        integral = len(values) > 0 and bool(np.all(np.mod(values, 1) == 0))
        return ("integer" if integral else "numeric"), s
    sample = s.dropna().astype(str).head(1000)
    if len(sample) and sample.str.match(_DATE_HINT).all():
        parsed = pd.to_datetime(s, errors="coerce", utc=True, format="ISO8601")
        if parsed.notna().sum() == s.notna().sum():
            return "datetime", parsed
    return "categorical", s


def _infer_role(s: pd.Series, name: str, target: str, kind: ColumnKind, cardinality: int,
                rows: int, task: Task, y: pd.Series) -> tuple[Role, str | None]:
    if name == target:
        return "target", None
    if cardinality <= 1:
        return "constant", f"{cardinality} distinct value(s)"
    unique_ratio = cardinality / max(1, s.notna().sum())
    named_like_id = _ID_NAME.search(name) is not None
    if kind == "categorical" and (unique_ratio >= 0.95 or (unique_ratio >= 0.5 and named_like_id)):
        return "id", f"{unique_ratio:.0%} of values are distinct"
    if kind == "integer" and unique_ratio >= 0.99 and (named_like_id or s.is_monotonic_increasing):
        return "id", f"{unique_ratio:.0%} of values are distinct and it looks like a row key"
    score = leakage_score(s, kind, task, y)
    if score >= LEAKAGE_SCORE:
        return "leakage", (f"predicts the target almost perfectly on its own (score {score:.3f}); "
                           "likely derived from it, so unavailable at prediction time")
    return "feature", None


def leakage_score(s: pd.Series, kind: ColumnKind, task: Task, y: pd.Series) -> float:
    """How well this one column determines the target, from 0 to 1.

    Classification: the accuracy of predicting the majority class within each value (numeric
    columns in 50 quantile bins), rescaled so the always-majority baseline scores 0.
    Regression: absolute Spearman correlation (numeric) or the share of variance the column's
    categories explain (categorical).
    """
    mask = s.notna() & y.notna()
    if mask.sum() < MIN_ROWS:
        return 0.0
    x, t = s[mask], y[mask]
    if kind in ("numeric", "integer", "datetime"):
        values = _epoch_seconds(x) if kind == "datetime" else x.astype(float)
        if task == "regression":
            rho = values.rank().corr(t.astype(float).rank())
            return 0.0 if pd.isna(rho) else abs(float(rho))
        few = values.nunique() <= 50
        codes = values if few else pd.qcut(values, q=50, labels=False, duplicates="drop")
    else:
        codes = category_strings(x)
        if codes.nunique() > 0.5 * len(codes):  # near-unique keys "predict" anything
            return 0.0
    code_ids, _ = pd.factorize(np.asarray(codes))
    if task == "regression":
        target = t.astype(float).to_numpy()
        sums = np.bincount(code_ids, weights=target)
        sizes = np.bincount(code_ids)
        explained = (sums / sizes)[code_ids]
        total = float(((target - target.mean()) ** 2).sum())
        return 0.0 if total == 0 else 1.0 - float(((target - explained) ** 2).sum()) / total
    class_ids, classes = pd.factorize(t)
    table = np.bincount(code_ids * len(classes) + class_ids,
                        minlength=(code_ids.max() + 1) * len(classes)).reshape(-1, len(classes))
    baseline = table.sum(axis=0).max() / len(t)
    accuracy = table.max(axis=1).sum() / len(t)
    return 0.0 if baseline >= 1.0 else max(0.0, float((accuracy - baseline) / (1.0 - baseline)))


def category_strings(s: pd.Series) -> pd.Series:
    """Category values as strings, with whole floats written as integers (``415.0`` -> ``415``)."""
    if pd.api.types.is_float_dtype(s):
        whole = s.dropna()
        if len(whole) and bool(np.all(np.mod(whole.to_numpy(), 1) == 0)):
            return s.astype("Int64").astype("string")
    if pd.api.types.is_bool_dtype(s):
        return s.map({True: "true", False: "false"})
    if isinstance(s.dtype, pd.StringDtype):
        return s
    return s.astype("string")


def _epoch_seconds(s: pd.Series) -> pd.Series:
    return (s.astype("datetime64[ns, UTC]") if s.dt.tz is not None else s).astype("int64") / 1e9


def _nearest(name: str, options: list[str]) -> str:
    near = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""
