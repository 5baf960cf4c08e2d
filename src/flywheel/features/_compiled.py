"""The serving fast path: a fitted model pipeline compiled to dict lookups and one numpy call.

One row through ``Pipeline([("features", ColumnTransformer), ("model", estimator)])`` as a
DataFrame costs milliseconds, almost all of it pandas and scikit-learn bookkeeping; the model
itself needs tens of microseconds. ``compile_predictor`` copies the learned state of the feature
transformer into a ``FeatureEncoder`` (see ``_compiled_encoder.py``) and picks the cheapest exact
way to call the estimator:

    LightGBM            ``booster_.predict`` with what ``predict_proba``/``predict`` would pass;
                        one row through LightGBM's single-row C API (``_compiled_lightgbm``)
    XGBoost             ``Booster.inplace_predict``; one row through its dense C API with a
                        prepared input and config (``_compiled_xgboost``)
    CatBoost            its own ``predict_proba``/``predict`` on one thread
    LogisticRegression  ``X @ coef_.T + intercept_``, then sigmoid or softmax, as sklearn does
    Ridge, LinearRegression  ``X @ coef_ + intercept_``
    HistGradientBoosting  its trees' node arrays walked with numpy (``_compiled_hgb``), then its
                        loss, unless a tree splits on a categorical feature
    any other estimator its own ``predict_proba``/``predict`` on the encoded matrix

Outputs equal the pipeline's on the same input (bit for bit on the features; within rounding for
linear models); ``verify_compiled`` measures that on held-out rows before a version is served.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import is_classifier
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from flywheel.core.errors import CompileError
from flywheel.core.spec import Task
from flywheel.data import DataSchema
from flywheel.features._compiled_encoder import FeatureEncoder, compile_encoder
from flywheel.features._compiled_hgb import hgb_predict
from flywheel.features._compiled_lightgbm import lightgbm_predict
from flywheel.features._compiled_values import Column, max_abs_diff
from flywheel.features._compiled_xgboost import catboost_predict, xgboost_predict

__all__ = ["CompileReport", "CompiledEnsemble", "CompiledPredictor", "compile_predictor",
           "verify_compiled"]

Predict = Callable[[np.ndarray], np.ndarray]
_SINGLE_ROW_CHECKS = 200
"""How many rows ``verify_compiled`` also sends one at a time (the single-record code path)."""


@dataclass(frozen=True)
class CompileReport:
    """How closely a compiled predictor matched its pipeline on held-out rows."""

    verified: bool
    rows: int
    max_abs_diff: float
    atol: float

    def to_tags(self) -> dict[str, str]:
        """MLflow model-version tags."""
        return {
            "flywheel.compiled.verified": "true" if self.verified else "false",
            "flywheel.compiled.rows": str(self.rows),
            "flywheel.compiled.max_abs_diff": f"{self.max_abs_diff:.3g}",
            "flywheel.compiled.atol": f"{self.atol:g}",
        }


class CompiledPredictor:
    """A fitted pipeline's predictions from raw request values, without pandas.

    Input values are read as the pipeline's converters read them: numbers may come as numbers or
    text, booleans in any common spelling, datetimes as ISO-8601 text; an absent key or column, a
    None, or a value that cannot be read is missing and gets imputed or encoded as the pipeline
    would. Keys that are not feature columns are ignored. Nothing here raises on a value.

    Outputs are what the pipeline's ``predict_proba`` returns, shape (rows, classes) with columns
    in the estimator's ``classes_`` order (the integer codes 0..K-1 training uses), or what its
    ``predict`` returns for regression, shape (rows,). A row's output does not depend on the
    rows sent with it.
    Safe to call from several threads at once.
    """

    def __init__(self, encoder: FeatureEncoder, predict: Predict, *, task: Task,
                 feature_columns: list[str], kind: str, outputs: int | None) -> None:
        self.encoder = encoder
        self.task = task
        self.feature_columns = feature_columns
        """Raw input columns the model reads, in schema order."""
        self.kind = kind
        """How the estimator is called: lightgbm, xgboost, catboost, hist_gradient_boosting,
        logistic, linear, sklearn, or ensemble."""
        self._predict = predict
        self._empty_shape = (0,) if outputs is None else (0, outputs)

    def __repr__(self) -> str:
        return (f"CompiledPredictor(task={self.task!r}, kind={self.kind!r}, "
                f"columns={len(self.feature_columns)}, features={self.encoder.width})")

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predictions for row records, such as parsed JSON objects."""
        return self._call(self.encode_records(records))

    def predict_columns(self, columns: Mapping[str, Column]) -> np.ndarray:
        """Predictions for columnar input: column name -> list, numpy array or pandas Series.

        Raises:
            ValueError: If the feature columns given differ in length.
        """
        return self._call(self.encode_columns(columns))

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The (rows, features) float64 matrix the estimator receives."""
        if len(records) == 1:
            return np.array([self.encoder.encode_record(records[0])], dtype=np.float64)
        columns = {c: [r.get(c) for r in records] for c in self.feature_columns}
        return self.encoder.encode_columns(columns, len(records))

    def encode_columns(self, columns: Mapping[str, Column]) -> np.ndarray:
        """The (rows, features) float64 matrix the estimator receives, from columnar input.

        Raises:
            ValueError: If the feature columns given differ in length.
        """
        lengths = {c: len(columns[c]) for c in self.feature_columns if c in columns}
        if not lengths:
            lengths = {c: len(v) for c, v in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns differ in length: {lengths}; every column needs one "
                             "value per row")
        rows = next(iter(lengths.values()), 0)
        return self.encoder.encode_columns(columns, rows)

    def _call(self, matrix: np.ndarray) -> np.ndarray:
        if matrix.shape[0] == 0:
            return np.empty(self._empty_shape, dtype=np.float64)
        return self._predict(matrix)


class CompiledEnsemble(CompiledPredictor):
    """A weighted average of compiled members (an ensemble's ``members_`` and ``weights_``).

    Members whose feature steps learned the same state (equal ``FeatureEncoder.state()``)
    share one encoding of each request: it is encoded once per group of such members, and
    each member's estimator gets the group's matrix. Members with another feature step keep
    their own. The outputs are averaged in member order, as ``EnsembleModel`` averages them.
    """

    def __init__(self, members: list[CompiledPredictor], weights: list[float], *, task: Task,
                 feature_columns: list[str]) -> None:
        first = members[0]
        super().__init__(first.encoder, first._predict, task=task,
                         feature_columns=feature_columns, kind="ensemble",
                         outputs=None if len(first._empty_shape) == 1 else first._empty_shape[1])
        self.members = members
        self.weights = weights
        groups: dict[bytes, list[int]] = {}
        for i, member in enumerate(members):
            groups.setdefault(member.encoder.state(), []).append(i)
        self.groups = [tuple(g) for g in groups.values()]
        """Member positions sharing one encoding, one tuple per distinct feature step."""

    def __repr__(self) -> str:
        return (f"CompiledEnsemble(task={self.task!r}, members="
                f"{[m.kind for m in self.members]}, weights={self.weights}, "
                f"encodings={len(self.groups)})")

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self._answer(lambda m: m.encode_records(records))

    def predict_columns(self, columns: Mapping[str, Column]) -> np.ndarray:
        return self._answer(lambda m: m.encode_columns(columns))

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        raise CompileError("model", "EnsembleModel", "an ensemble has one encoding per member")

    def encode_columns(self, columns: Mapping[str, Column]) -> np.ndarray:
        raise CompileError("model", "EnsembleModel", "an ensemble has one encoding per member")

    def _answer(self, encode: Callable[[CompiledPredictor], np.ndarray]) -> np.ndarray:
        outputs: list[np.ndarray] = [np.empty(0)] * len(self.members)
        for group in self.groups:
            matrix = encode(self.members[group[0]])
            for i in group:
                outputs[i] = self.members[i]._call(matrix)
        total = outputs[0] * self.weights[0]
        for out, weight in zip(outputs[1:], self.weights[1:], strict=True):
            total += out * weight
        return total


def compile_predictor(model: Pipeline, schema: DataSchema, *, task: Task,
                      num_threads: int = 1) -> CompiledPredictor:
    """Compile a fitted ``Pipeline([("features", ColumnTransformer), ("model", estimator)])``.

    A fitted ensemble (an estimator with ``members_``, such pipelines, and ``weights_``)
    compiles to a ``CompiledEnsemble`` of its compiled members.

    Args:
        model: The fitted pipeline as training registers it.
        schema: The data schema the model was trained with; its feature order orders
            ``feature_columns``.
        task: binary and multiclass compile ``predict_proba``; regression ``predict``.
        num_threads: Threads LightGBM or XGBoost may use per call (0: OpenMP's default). One suits a
            server with a worker per core: with more, a single row gains nothing, and
            threads that wait on busy cores put milliseconds into the p99.

    Raises:
        CompileError: If a step cannot be reproduced exactly; the message names it. Serve
            through ``model`` itself then.
    """
    members, weights = getattr(model, "members_", None), getattr(model, "weights_", None)
    if members is not None and weights is not None:
        compiled = [compile_predictor(m, schema, task=task, num_threads=num_threads)
                    for m in members]
        read = {c for m in compiled for c in m.feature_columns}
        return CompiledEnsemble(compiled, [float(w) for w in weights], task=task,
                                feature_columns=[c for c in schema.feature_columns if c in read])
    if not isinstance(model, Pipeline) or len(model.steps) < 2:
        raise CompileError("model", type(model).__name__, "expected a fitted Pipeline of a "
                           "ColumnTransformer and an estimator")
    *transforms, (name, estimator) = model.steps
    active = [(n, s) for n, s in transforms
              if not (s is None or (isinstance(s, str) and s == "passthrough"))]
    if len(active) != 1:
        raise CompileError("model", "Pipeline", f"expected one feature step before the "
                           f"estimator, found {[n for n, _ in active]}")
    feature_name, features = active[0]
    encoder = compile_encoder(features, where=feature_name)
    known = set(schema.feature_columns)
    unknown = [c for c in encoder.columns if c not in known]
    if unknown:
        raise CompileError(feature_name, "ColumnTransformer", f"it reads {unknown}, which the "
                           "schema does not list as features; the model and schema do not "
                           "belong together")
    read = set(encoder.columns)
    columns = [c for c in schema.feature_columns if c in read]
    n_features = getattr(estimator, "n_features_in_", encoder.width)
    if n_features != encoder.width:
        raise CompileError(name, type(estimator).__name__, f"it expects {n_features} features "
                           f"but the feature step produces {encoder.width}")
    predict, kind, outputs = _compile_estimator(estimator, task, name, num_threads)
    return CompiledPredictor(encoder, predict, task=task, feature_columns=columns, kind=kind,
                             outputs=outputs)


def verify_compiled(compiled: CompiledPredictor, model: Pipeline, frame: pd.DataFrame, *,
                    atol: float = 1e-6) -> CompileReport:
    """Compare ``compiled`` with ``model`` on the rows of ``frame`` (held-out data).

    All rows go through ``predict_columns``; the first 200 also go one at a time through
    ``predict_records``, the path single requests take. ``max_abs_diff`` is the largest
    difference over both; a NaN where the other has a number counts as infinite.

    Raises:
        ValueError: If ``frame`` has no rows.
    """
    if len(frame) == 0:
        raise ValueError("verify_compiled needs at least one held-out row")
    if compiled.task == "regression":
        expected = np.asarray(model.predict(frame), dtype=np.float64)
    else:
        expected = np.asarray(model.predict_proba(frame), dtype=np.float64)
    given = {c: frame[c] for c in compiled.feature_columns if c in frame.columns}
    worst = max_abs_diff(expected, compiled.predict_columns(given))
    head = frame.head(_SINGLE_ROW_CHECKS)[[c for c in given]]
    for i, record in enumerate(head.to_dict(orient="records")):
        single = compiled.predict_records([{str(k): v for k, v in record.items()}])
        worst = max(worst, max_abs_diff(expected[i:i + 1], single))
    return CompileReport(verified=worst <= atol, rows=len(frame), max_abs_diff=worst, atol=atol)


def _compile_estimator(estimator: Any, task: Task, where: str,
                       num_threads: int) -> tuple[Predict, str, int | None]:
    """The exact prediction function for ``estimator``, its kind, and classes (None: values)."""
    classify = task != "regression"
    if classify and not hasattr(estimator, "predict_proba"):
        raise CompileError(where, type(estimator).__name__, f"the task is {task} but it has no "
                           "predict_proba")
    if not classify and is_classifier(estimator):
        raise CompileError(where, type(estimator).__name__, "the task is regression but it is "
                           "a classifier")
    classes = len(estimator.classes_) if classify and hasattr(estimator, "classes_") else None
    package = type(estimator).__module__.split(".")[0]
    if package == "lightgbm":
        return lightgbm_predict(estimator, classify, where, num_threads), "lightgbm", classes
    if package == "xgboost":
        return xgboost_predict(estimator, classify, where, num_threads), "xgboost", classes
    if package == "catboost":
        return catboost_predict(estimator, classify, where), "catboost", classes
    if type(estimator) in (HistGradientBoostingClassifier, HistGradientBoostingRegressor):
        walk = hgb_predict(estimator, classify)
        if walk is not None:
            return walk, "hist_gradient_boosting", classes
    if type(estimator) is LogisticRegression and classify:
        return _logistic(estimator), "logistic", classes
    if type(estimator) in (Ridge, LinearRegression) and not classify \
            and np.ndim(estimator.coef_) == 1:
        coef = np.asarray(estimator.coef_)
        intercept = estimator.intercept_
        return (lambda matrix: matrix @ coef + intercept), "linear", None
    method = estimator.predict_proba if classify else estimator.predict
    return method, "sklearn", classes


def _logistic(estimator: LogisticRegression) -> Predict:
    coef_t = np.asarray(estimator.coef_).T
    intercept = np.asarray(estimator.intercept_)
    binary = len(estimator.classes_) <= 2

    # The same operations as LogisticRegression.predict_proba, in the same order.
    def predict(matrix: np.ndarray) -> np.ndarray:
        scores = matrix @ coef_t + intercept
        if binary:
            prob = expit(scores.reshape(-1))
            return np.stack([1 - prob, prob], axis=1)
        scores -= scores.max(axis=1).reshape(-1, 1)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1).reshape(-1, 1)
        return np.asarray(scores)

    return predict
