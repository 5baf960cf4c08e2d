"""Exact per-column explanations: tree contributions folded back to raw columns.

LightGBM's ``pred_contrib`` (and XGBoost's ``pred_contribs``, CatBoost's ``ShapValues``:
``_contributions_xgboost``) splits each row's raw score (log-odds for a binary model, one
score per class for a multiclass one, the prediction itself for regression) into one value
per encoded feature plus the bias (the expected raw score); the parts sum to the raw score.
The feature pipeline turns one raw column into several features (one-hot categories, a target
encoding's per-class columns, datetime parts, a missing-value indicator); the values of a
column's features are added, so each raw column gets one contribution and the sum is kept.

One record goes through LightGBM's prepared single-row C API (as ``_compiled_lightgbm`` does
for predictions); a batch through ``Booster.predict(pred_contrib=True)``.

Each learner's contributions sit behind ``TreeContributions``, two methods on the encoded
matrix; the explainer encodes and folds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from flywheel.core.errors import CompileError, ExplanationError
from flywheel.core.spec import Task
from flywheel.data import DataSchema
from flywheel.features._compiled_encoder import FeatureEncoder, compile_encoder
from flywheel.features._compiled_lightgbm import _SingleRow
from flywheel.features._compiled_values import Column
from flywheel.features._contributions_xgboost import catboost_contributions, xgboost_contributions

__all__ = ["ContributionExplainer", "Contributions", "contribution_explainer",
           "contribution_importance", "source_columns"]

_PREDICT_CONTRIB = 3
"""LightGBM's ``C_API_PREDICT_CONTRIB``."""


@dataclass(frozen=True)
class Contributions:
    """Per-row, per-column parts of the raw score.

    ``values[r, k, c]`` is column ``columns[c]``'s part of output ``k`` of row ``r`` and
    ``bias[r, k]`` the expected raw score; ``values.sum(axis=2) + bias`` is the raw score.
    One output for binary and regression models (the positive class's log-odds, or the
    value), one per class for multiclass ones.
    """

    columns: list[str]
    values: np.ndarray
    bias: np.ndarray

    @property
    def raw(self) -> np.ndarray:
        """(rows, outputs): the raw scores the parts add up to."""
        return np.asarray(self.values.sum(axis=2) + self.bias)

    def mean_abs(self) -> dict[str, float]:
        """Global importance: the mean absolute contribution of each column over rows and
        outputs, largest first."""
        if self.values.shape[0] == 0:
            return {c: 0.0 for c in self.columns}
        means = np.abs(self.values).mean(axis=(0, 1))
        order = np.argsort(-means, kind="stable")
        return {self.columns[i]: float(means[i]) for i in order}


class TreeContributions(Protocol):
    """One learner's exact contributions on an encoded float64 matrix (thread-safe)."""

    outputs: int

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """(rows, outputs, features + 1): each feature's part and, last, the bias; they add up
        to ``raw_scores``."""
        ...

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        """(rows, outputs): the model's raw scores."""
        ...


class _LightgbmContributions:
    def __init__(self, booster: Any, params: dict[str, Any], outputs: int) -> None:
        self.outputs = outputs
        self._booster = booster
        self._params = params
        self._single = _SingleRow.create(booster, params, predict_type=_PREDICT_CONTRIB)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        rows = matrix.shape[0]
        if rows == 1 and self._single is not None:
            flat = self._single(matrix[0]).reshape(1, -1)
        else:  # num_iteration=None: the best iteration, as predictions use
            flat = np.asarray(self._booster.predict(matrix, pred_contrib=True,
                                                    num_iteration=None, **self._params))
        return flat.reshape(rows, self.outputs, -1)

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        raw = np.asarray(self._booster.predict(matrix, raw_score=True, num_iteration=None,
                                               **self._params))
        return raw.reshape(matrix.shape[0], self.outputs)


class ContributionExplainer:
    """A fitted tree-model pipeline's exact contributions per raw column, from raw values.

    Raw values are read as ``CompiledPredictor`` reads them (the same ``FeatureEncoder``).
    Safe to call from several threads at once.
    """

    def __init__(self, encoder: FeatureEncoder, trees: TreeContributions, *,
                 columns: list[str], fold: np.ndarray, log_link: bool = False) -> None:
        self.encoder = encoder
        self.columns = columns
        """Raw columns explained, in schema order."""
        self.log_link = log_link
        """A regression whose raw score is the log of its prediction (a Poisson, Tweedie or
        gamma loss)."""
        self.outputs = trees.outputs
        self._trees = trees
        self._fold = fold  # (features, columns): 1 where a feature comes from a column

    def explain_records(self, records: Sequence[Mapping[str, Any]]) -> Contributions:
        """Contributions for row records, such as parsed JSON objects."""
        if len(records) == 1:
            matrix = np.array([self.encoder.encode_record(records[0])], dtype=np.float64)
        else:
            matrix = self.encoder.encode_columns(
                {c: [r.get(c) for r in records] for c in self.encoder.columns}, len(records))
        return self.explain_matrix(matrix)

    def explain_columns(self, columns: Mapping[str, Column], rows: int) -> Contributions:
        """Contributions for columnar input (column name -> values, ``rows`` long)."""
        return self.explain_matrix(self.encoder.encode_columns(columns, rows))

    def explain_matrix(self, matrix: np.ndarray) -> Contributions:
        """Contributions for an encoded (rows, features) float64 matrix."""
        rows, width = matrix.shape[0], self.encoder.width
        if rows == 0:
            return Contributions(self.columns, np.zeros((0, self.outputs, len(self.columns))),
                                 np.zeros((0, self.outputs)))
        parts = self._trees.contributions(matrix).reshape(rows, self.outputs, width + 1)
        return Contributions(self.columns, parts[:, :, :width] @ self._fold,
                             np.ascontiguousarray(parts[:, :, width]))

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        """(rows, outputs): the model's raw scores for an encoded matrix."""
        return self._trees.raw_scores(matrix)


def source_columns(encoder: FeatureEncoder) -> list[str]:
    """The raw column each encoded feature comes from, in output order.

    Raises:
        CompileError: If an output position is not traced to a column.
    """
    sources: list[str | None] = [None] * encoder.width
    for column, _, _, slots in encoder.scalars:
        for position, _ in slots:
            sources[position] = column
    for column, parts in encoder.dates:
        for _, position, _ in parts:
            sources[position] = column
    for column, positions in encoder.one_hots:
        for position in positions.values():
            sources[position] = column
    for table in encoder.tables:
        for position in range(table.start, table.start + int(table.table.shape[1])):
            sources[position] = table.column
    untraced = [encoder.names[i] for i, s in enumerate(sources) if s is None]
    if untraced:
        raise CompileError("features", "ColumnTransformer", f"features {untraced[:5]} are not "
                           "traced to a raw column")
    return [s for s in sources if s is not None]


def contribution_explainer(model: Any, schema: DataSchema | None, *, task: Task,
                           version: str = "this model",
                           num_threads: int = 1) -> ContributionExplainer:
    """The explainer of a fitted ``Pipeline([("features", ColumnTransformer), ("model",
    estimator)])`` whose estimator is a LightGBM, XGBoost or CatBoost model.

    Args:
        schema: Orders the explained columns (None: the feature step's order).
        num_threads: LightGBM's and CatBoost's threads per batch: one for a server answering
            single rows (a worker per core), 0 (every core) for batches such as monitoring's.
            XGBoost's contributions use the booster's own setting.

    Raises:
        ExplanationError: If the estimator has no exact tree contributions or a feature step
            cannot be traced to its raw column; the message says which.
    """
    steps = getattr(model, "steps", None)
    if not steps or len(steps) != 2:
        raise ExplanationError(version, f"expected a fitted Pipeline of the feature step and "
                               f"an estimator, got {type(model).__name__}")
    (feature_name, features), (name, estimator) = steps
    package = type(estimator).__module__.split(".")[0]
    if package not in _EXPLAINED or not hasattr(estimator, "n_features_in_"):
        raise ExplanationError(version, f"its estimator {name!r} is a "
                               f"{type(estimator).__name__}, which has no exact tree "
                               "contributions")
    if callable(getattr(estimator, "objective", None)):
        raise ExplanationError(version, f"its {package} model has a custom objective")
    try:
        encoder = compile_encoder(features, where=feature_name)
        sources = source_columns(encoder)
    except CompileError as exc:
        raise ExplanationError(version, exc.reason) from None
    if estimator.n_features_in_ != encoder.width:
        raise ExplanationError(version, f"its model reads {estimator.n_features_in_} features "
                               f"but the feature step makes {encoder.width}")
    trees = _EXPLAINED[package](estimator, task, version, num_threads)
    used = set(sources)
    columns = [c for c in schema.feature_columns if c in used] if schema is not None else []
    columns += [c for c in dict.fromkeys(sources) if c not in set(columns)]
    index = {c: i for i, c in enumerate(columns)}
    fold = np.zeros((encoder.width, len(columns)), dtype=np.float64)
    for position, column in enumerate(sources):
        fold[position, index[column]] = 1.0
    return ContributionExplainer(encoder, trees, columns=columns, fold=fold,
                                 log_link=task == "regression" and _log_link(estimator))


def _log_link(estimator: Any) -> bool:
    """Whether a regressor's loss (LightGBM ``poisson``, XGBoost ``count:poisson``, CatBoost
    ``Tweedie:variance_power=1.5``...) predicts the exp of its raw score."""
    params = estimator.get_params() if hasattr(estimator, "get_params") else {}
    loss = str(params.get("objective") or params.get("loss_function") or "").lower()
    return loss.rpartition(":")[2].startswith(_LOG_LINKS) or loss.startswith(_LOG_LINKS)


_LOG_LINKS = ("poisson", "tweedie", "gamma")


def _lightgbm(estimator: Any, task: Task, version: str, num_threads: int
              ) -> TreeContributions:
    booster = estimator.booster_
    params: dict[str, Any] = {k: v for k, v in estimator.get_params().items()
                              if k.startswith("pred_early_stop")}
    params["num_threads"] = num_threads
    outputs = int(booster.num_model_per_iteration())
    if task != "regression" and outputs == 1 and getattr(estimator, "n_classes_", 2) > 2:
        raise ExplanationError(version, "its classifier has one output for several classes")
    return _LightgbmContributions(booster, params, outputs)


_EXPLAINED = {"lightgbm": _lightgbm, "xgboost": xgboost_contributions,
              "catboost": catboost_contributions}
"""Estimator package -> its ``TreeContributions`` (raising ``ExplanationError``)."""


def contribution_importance(model: Any, frame: pd.DataFrame, *, task: Task,
                            explainer: ContributionExplainer | None = None
                            ) -> dict[str, float] | None:
    """Mean absolute contribution per raw column over the rows of ``frame``, largest first,
    computed on every core; None when ``model`` cannot be explained (``ExplanationError``).

    Args:
        explainer: ``model``'s explainer, when the caller keeps one between frames.
    """
    if explainer is None:
        try:
            explainer = contribution_explainer(model, None, task=task, num_threads=0)
        except ExplanationError:
            return None
    given = {c: frame[c] for c in explainer.encoder.columns if c in frame.columns}
    return explainer.explain_columns(given, len(frame)).mean_abs()
