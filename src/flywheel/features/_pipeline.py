"""The feature pipeline: raw schema columns to one dense float64 matrix.

Columns are grouped by how they are treated (kind, encoding, imputation, scaling), and each group
becomes one branch of a ``ColumnTransformer``: a conversion step from ``_convert.py`` followed by
scikit-learn's own imputers, scalers and encoders. Grouping keeps the number of branches small,
which is most of the cost of transforming a single row in serving.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
    TargetEncoder,
)

from flywheel.core.errors import ConfigError
from flywheel.core.spec import FeaturesSpec, Impute, Task
from flywheel.data import ColumnSchema, DataSchema
from flywheel.features._convert import (
    CONVERTER_NAMES,
    datetime_feature_names,
    to_bool_floats,
    to_category_strings,
    to_datetime_parts,
    to_floats,
)

__all__ = ["FEATURE_TRUSTED_TYPES", "build_feature_pipeline"]

_LIBRARY_TYPES = [f"{t.__module__}.{t.__qualname__}" for t in (KFold, StratifiedKFold, np.dtype)]
"""Types a fitted pipeline holds that skops does not trust by default: the target encoder's
fold splitter and the dtype SimpleImputer records."""

FEATURE_TRUSTED_TYPES: list[str] = [*CONVERTER_NAMES, *_LIBRARY_TYPES]
"""Every type a fitted feature pipeline holds that skops does not trust by default, for
``skops.io.loads(data, trusted=...)``.

The flywheel names are the conversion functions in ``_convert.py`` (the pipeline holds no
flywheel classes); the rest are scikit-learn's fold splitters and ``numpy.dtype``.
"""

_TARGET_TYPES: dict[str, str] = {"binary": "binary", "multiclass": "multiclass",
                                 "regression": "continuous"}
_CATEGORY_ENCODINGS = ("one_hot", "target", "ordinal")
_TARGET_FOLDS = 5
_SEED = 0
"""Seeds the target encoder's cross-fitting folds, so refits on the same data agree."""


@dataclass
class _Plan:
    """Column names per branch, in schema order; dict keys keep branch order stable."""

    numeric: dict[tuple[Impute, bool], list[str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    boolean: list[str] = field(default_factory=list)
    datetime: dict[bool, list[str]] = field(default_factory=dict)
    categorical: dict[str, list[str]] = field(default_factory=dict)


def build_feature_pipeline(schema: DataSchema, spec: FeaturesSpec, *, task: Task,
                           scale_numeric: bool = False) -> ColumnTransformer:
    """An unfitted transformer from raw data columns to a dense float64 feature matrix.

    Only columns whose schema role is ``feature`` are used; the rest, and columns the schema does
    not know, are ignored, so the frame may hold the target and be in any column order.
    ``fit(X, y)`` expects ``y`` label-encoded (classification) or float (regression); target
    encoding uses it. Values that cannot be read (text in a numeric column, a malformed date, an
    unseen category) never raise: they are imputed or encoded as unknown.

    Per kind:
        numeric, integer: to float, imputed (``spec.impute`` or the column's ``impute``), plus a
            ``missingindicator_<col>`` feature when the schema says the column had nulls;
            standardized when ``scale_numeric`` or the column's ``scale`` says so.
        categorical: to strings, missing as ``"__missing__"``; one-hot up to
            ``spec.one_hot_max_categories`` categories, else ``spec.high_cardinality``; the
            column's ``encoding`` overrides.
        boolean: to 0/1, missing imputed with the most frequent value.
        datetime: UTC hour, day of week, month and day of month, imputed with the median;
            standardized like numeric columns.
    A column's ``encoding: drop`` removes it whatever its kind. Output names are the column
    names, ``<column>_<category>`` (one-hot), ``<column>_<part>`` (datetime) and
    ``missingindicator_<column>``; only if a raw name could clash with a derived one do all names
    get their branch as a prefix (``numeric_median__x``).

    Args:
        schema: Column kinds, roles, nullability and category counts.
        spec: Encoding, imputation and scaling choices, with per-column overrides.
        task: Decides the target encoder's target type.
        scale_numeric: Standardize numeric and datetime features (for linear models, SVMs, k-NN).

    Raises:
        ConfigError: If an override names a column the schema does not have, asks for a
            categorical encoding of a non-categorical column, or no feature column remains.
    """
    _check_overrides(schema, spec)
    plan = _plan(schema, spec, scale_numeric=scale_numeric)
    branches = _branches(plan, task)
    if not branches:
        raise ConfigError(
            "no feature columns are left to build features from; give at least one schema column "
            "role `feature`, or remove `encoding: drop` from features.columns."
        )
    ct = ColumnTransformer(branches, remainder="drop", sparse_threshold=0.0,
                           verbose_feature_names_out=_names_may_collide(plan))
    # A process-wide set_output(transform="pandas") must not change what this returns.
    return ct.set_output(transform="default")


def _check_overrides(schema: DataSchema, spec: FeaturesSpec) -> None:
    problems = []
    for name, override in spec.columns.items():
        col = schema.columns.get(name)
        if col is None:
            near = difflib.get_close_matches(name, list(schema.columns), n=1, cutoff=0.6)
            hint = f"did you mean {near[0]!r}?" if near else "check the column name"
            problems.append(f"features.columns.{name}: not a column in the schema; {hint}")
        elif override.encoding in _CATEGORY_ENCODINGS and col.kind != "categorical":
            problems.append(
                f"features.columns.{name}.encoding: {override.encoding} applies to categorical "
                f"columns, but the schema says {col.kind}; set `kind: categorical` in the schema "
                "or use auto or drop"
            )
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) in the feature overrides:",
                          problems=problems)


def _plan(schema: DataSchema, spec: FeaturesSpec, *, scale_numeric: bool) -> _Plan:
    plan = _Plan()
    for name, col in schema.columns.items():
        if not col.is_feature:
            continue
        override = spec.columns.get(name)
        if override is not None and override.encoding == "drop":
            continue
        scale = scale_numeric if override is None or override.scale is None else override.scale
        if col.kind in ("numeric", "integer"):
            impute = spec.impute if override is None or override.impute is None else override.impute
            plan.numeric.setdefault((impute, scale), []).append(name)
            if col.nullable:
                plan.missing.append(name)
        elif col.kind == "boolean":
            plan.boolean.append(name)
        elif col.kind == "datetime":
            plan.datetime.setdefault(scale, []).append(name)
        else:
            encoding: str = override.encoding if override is not None else "auto"
            if encoding == "auto":
                encoding = _auto_encoding(col, spec)
            if encoding != "drop":
                plan.categorical.setdefault(encoding, []).append(name)
    return plan


def _names_may_collide(plan: _Plan) -> bool:
    """Whether a column's plain name could equal a name derived from another column.

    Derived names are ``<column>_<category|part|class>`` and ``missingindicator_<column>``. When
    a raw name could be one of them (a numeric ``colour_red`` beside a categorical ``colour``),
    every output name gets its branch as a prefix (``numeric_median__colour_red``) instead.
    """
    used = [*(c for cols in plan.numeric.values() for c in cols), *plan.boolean]
    expanded = [*(c for cols in plan.datetime.values() for c in cols),
                *(c for cols in plan.categorical.values() for c in cols)]
    prefixes = ("missingindicator_", *(f"{c}_" for c in expanded))
    return any(name.startswith(prefixes) for name in [*used, *expanded])


def _auto_encoding(col: ColumnSchema, spec: FeaturesSpec) -> str:
    n = len(col.categories) if col.categories is not None else col.cardinality
    # An unknown count is treated as high: target and ordinal encoding cope with any number.
    if n is not None and n <= spec.one_hot_max_categories:
        return "one_hot"
    return spec.high_cardinality


def _branches(plan: _Plan, task: Task) -> list[tuple[str, Any, list[str]]]:
    branches: list[tuple[str, Any, list[str]]] = []
    for (impute, scale), columns in plan.numeric.items():
        steps = [("to_float", _converter(to_floats))]
        if impute != "none":
            steps.append(("impute", _imputer(impute)))
        if scale:
            steps.append(("scale", StandardScaler()))
        label = f"numeric_{impute}" + ("_scaled" if scale else "")
        branches.append((label, Pipeline(steps), columns))
    if plan.missing:
        indicator = MissingIndicator(features="all", error_on_new=False)
        branches.append(("missing", Pipeline([("to_float", _converter(to_floats)),
                                              ("indicate", indicator)]), plan.missing))
    if plan.boolean:
        branches.append(("boolean", Pipeline([
            ("to_bool", _converter(to_bool_floats)),
            ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
        ]), plan.boolean))
    for scale, columns in plan.datetime.items():
        steps = [("to_parts", _converter(to_datetime_parts, datetime_feature_names)),
                 ("impute", _imputer("median"))]
        if scale:
            steps.append(("scale", StandardScaler()))
        label = "datetime" + ("_scaled" if scale else "")
        branches.append((label, Pipeline(steps), columns))
    for encoding, columns in plan.categorical.items():
        branches.append((encoding, Pipeline([("to_str", _converter(to_category_strings)),
                                             ("encode", _encoder(encoding, task))]), columns))
    return branches


def _converter(func: Any, names: Any = "one-to-one") -> FunctionTransformer:
    return FunctionTransformer(func, feature_names_out=names)


def _imputer(impute: Impute) -> SimpleImputer:
    # keep_empty_features: a column with no values in training still yields its feature, so the
    # output width never depends on the data.
    if impute == "zero":
        return SimpleImputer(strategy="constant", fill_value=0.0, keep_empty_features=True)
    return SimpleImputer(strategy=impute, keep_empty_features=True)


def _encoder(encoding: str, task: Task) -> Any:
    if encoding == "one_hot":
        return OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    if encoding == "target":
        return TargetEncoder(target_type=_TARGET_TYPES[task], cv=_folds(task))
    if encoding == "ordinal":
        return OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                              encoded_missing_value=-1)
    raise ConfigError(f"unknown categorical encoding {encoding!r}; choose one of "
                      f"{sorted(_CATEGORY_ENCODINGS)} or drop.")


def _folds(task: Task) -> KFold | StratifiedKFold:
    # The target encoder fits each row's encoding on the other folds, so a learner downstream
    # does not see its own row's target through the encoding.
    folds = KFold if task == "regression" else StratifiedKFold
    return folds(n_splits=_TARGET_FOLDS, shuffle=True, random_state=_SEED)
