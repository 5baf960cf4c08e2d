"""Model validation gates: the checks a version must pass before it may become champion.

Gates run after training on the holdout, in a fixed order: absolute thresholds, the comparison
with the current champion, cross-validation stability, robustness, latency, fairness. Each
returns a :class:`GateResult` (pass, fail or skip, the reason in one line, and its numbers).
A gate that raises is a failed gate with its error recorded, never a pass. A skipped gate
(no champion yet, a gate turned off) does not block.

The report travels with the version: version tags ``flywheel.gates.*`` for a glance, and the
whole report as ``gates.json``.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from flywheel.core.errors import ConfigError
from flywheel.core.spec import ChampionGateSpec, GatesSpec, Task, ThresholdSpec
from flywheel.evaluation._metrics import task_metrics
from flywheel.evaluation._robustness import predict_fn, run_robustness
from flywheel.evaluation._stats import PairedComparison, compare_paired

__all__ = [
    "ChampionPredictions",
    "FastPath",
    "GateInputs",
    "GateReport",
    "GateResult",
    "check_gates_config",
    "run_gates",
]

Status = Literal["pass", "fail", "skip"]
TAG_PREFIX = "flywheel.gates."
_LATENCY_CALLS = 100
_LATENCY_WARMUP = 10
_LATENCY_ROUNDS = 2


@dataclasses.dataclass(frozen=True)
class GateResult:
    """One gate's verdict.

    Attributes:
        name: ``threshold:roc_auc``, ``champion``, ``cv_stability``, ``robustness``,
            ``latency`` or ``fairness:<column>``.
        status: ``pass``, ``fail`` or ``skip``.
        reason: One line a person reads.
        values: The numbers behind the verdict.
        checks: Sub-checks (robustness perturbations, fairness groups).
        error: The exception, when the gate crashed (and so failed).
    """

    name: str
    status: Status
    reason: str
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    checks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    error: str | None = None
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status != "fail"

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return found


@dataclasses.dataclass(frozen=True)
class GateReport:
    """Every gate's result for one version."""

    results: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed]

    def get(self, name: str) -> GateResult | None:
        return next((r for r in self.results if r.name == name), None)

    def summary(self) -> str:
        """``all 6 gates passed`` or ``2 of 6 gates failed: champion, latency``."""
        if self.passed:
            skipped = sum(r.status == "skip" for r in self.results)
            extra = f" ({skipped} skipped)" if skipped else ""
            return f"all {len(self.results)} gates passed{extra}"
        names = ", ".join(r.name for r in self.failed)
        return f"{len(self.failed)} of {len(self.results)} gates failed: {names}"

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "summary": self.summary(),
                "results": [r.to_dict() for r in self.results]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateReport:
        fields = {f.name for f in dataclasses.fields(GateResult)}
        return cls(tuple(GateResult(**{k: v for k, v in r.items() if k in fields})
                         for r in data.get("results", [])))

    def tags(self) -> dict[str, str]:
        """Version tags: ``flywheel.gates.passed`` and one ``flywheel.gates.<name>`` each."""
        tags = {f"{TAG_PREFIX}passed": str(self.passed).lower(),
                f"{TAG_PREFIX}summary": self.summary()}
        for r in self.results:
            tags[f"{TAG_PREFIX}{r.name}"] = f"{r.status}: {r.reason}"[:5000]
        return tags


@dataclasses.dataclass(frozen=True)
class ChampionPredictions:
    """The current champion scored on the challenger's holdout.

    Attributes:
        version: The champion's version number.
        rows: Positions in the holdout the champion never trained on (the compared rows).
        prediction: The champion's prediction for those rows.
        excluded: Holdout rows left out because the champion trained on them.
        note: How the rows were chosen, for the report.
        error: Why the champion could not be scored; the gate then fails.
    """

    version: str
    rows: np.ndarray | None = None
    prediction: np.ndarray | None = None
    excluded: int = 0
    note: str = ""
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class FastPath:
    """The form that serves the model when it is not the pipeline itself (a compiled predictor).

    Latency is measured on it, one record at a time, as a server calls it; robustness checks
    run on it as well as on the pipeline.

    Attributes:
        name: How reports call it (``compiled``).
        predict_record: Prediction for one record (column -> value).
        predict_frame: Predictions for the rows of a frame.
    """

    name: str
    predict_record: Callable[[Mapping[str, Any]], np.ndarray]
    predict_frame: Callable[[pd.DataFrame], np.ndarray]


@dataclasses.dataclass(frozen=True)
class GateInputs:
    """What the gates look at.

    Attributes:
        model: The fitted model (``predict_proba`` for classifiers, ``predict`` for regression).
        holdout: The holdout rows' raw feature columns.
        y: The holdout labels (class codes or values).
        prediction: The model's prediction of ``holdout``.
        kinds: Schema kind of each feature column.
        groups: Sensitive columns for the holdout rows (may include non-features).
        target_range: Regression: (min, max) of the training target.
        fast_path: What serves instead of the pipeline, if anything.
        no_champion: Why ``champion`` is None, for the skipped gate's reason.
    """

    task: Task
    metric: str
    model: Any
    holdout: pd.DataFrame
    y: np.ndarray
    prediction: np.ndarray
    holdout_metrics: Mapping[str, float]
    cv_metrics: Mapping[str, float]
    kinds: Mapping[str, str]
    champion: ChampionPredictions | None = None
    groups: pd.DataFrame | None = None
    target_range: tuple[float, float] | None = None
    seed: int = 0
    fast_path: FastPath | None = None
    no_champion: str = "no champion yet to compare with"


def check_gates_config(spec: GatesSpec, task: Task, metric: str) -> None:
    """Refuse a gates section that names metrics the task does not have, before training.

    Raises:
        ConfigError: With every problem, each with its path.
    """
    names = set(task_metrics(task))
    problems = []
    for i, t in enumerate(spec.thresholds):
        if _threshold_source(t.metric, names) is None:
            problems.append(f"gates.thresholds[{i}].metric: {t.metric!r} is not a {task} metric; "
                            f"use one of {', '.join(sorted(names))} (prefix cv_ for the "
                            "cross-validated value; suffix _std for its spread)")
    champion_metric = spec.champion.metric or metric
    if spec.champion.mode != "off" and champion_metric not in names:
        problems.append(f"gates.champion.metric: {champion_metric!r} is not a {task} metric; "
                        f"use one of {', '.join(sorted(names))}")
    if spec.champion.method == "delong" and spec.champion.mode != "off" and (
            task != "binary" or champion_metric != "roc_auc"):
        problems.append("gates.champion.method: delong is for roc_auc of a binary task; "
                        "use auto or bootstrap")
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) in the gates:", problems=problems)


def run_gates(spec: GatesSpec, inputs: GateInputs,
              on_gate: Callable[[str], None] | None = None) -> GateReport:
    """Run every gate; never raises for a failing or crashing gate."""
    planned: list[tuple[str, Callable[[], GateResult]]] = [
        (f"threshold:{t.metric}", _bind(_threshold_gate, t, inputs)) for t in spec.thresholds]
    planned.append(("champion", _bind(_champion_gate, spec.champion, inputs)))
    planned.append(("cv_stability", _bind(_cv_gate, spec.cv_std_max, inputs)))
    planned.append(("robustness", _bind(_robustness_gate, spec.robustness, inputs)))
    planned.append(("latency", _bind(_latency_gate, spec.latency_p99_ms, inputs)))
    for column in spec.fairness.sensitive_columns:
        planned.append((f"fairness:{column}", _bind(_fairness_gate, column, spec, inputs)))
    results = []
    for name, gate in planned:
        if on_gate is not None:
            on_gate(name)
        started = time.perf_counter()
        try:
            result = gate()
        except Exception as exc:  # a crashing gate is a failed gate, never a pass
            result = GateResult(name, "fail", f"the gate crashed: {type(exc).__name__}: {exc}",
                                error=f"{type(exc).__name__}: {exc}")
        results.append(dataclasses.replace(result, name=name,
                                           duration_s=round(time.perf_counter() - started, 4)))
    return GateReport(tuple(results))


def _bind(fn: Callable[..., GateResult], *args: Any) -> Callable[[], GateResult]:
    return lambda: fn(*args)


# Thresholds -------------------------------------------------------------------------------

def _threshold_source(name: str, metrics: set[str]) -> tuple[str, str] | None:
    """(``holdout`` or ``cv``, key) for a threshold's metric name, or None if unknown."""
    if name.startswith("cv_"):
        base = name[3:].removesuffix("_std")
        return ("cv", name[3:]) if base in metrics else None
    base = name.removeprefix("holdout_")
    return ("holdout", base) if base in metrics else None


def _threshold_gate(rule: ThresholdSpec, inputs: GateInputs) -> GateResult:
    source = _threshold_source(rule.metric, set(task_metrics(inputs.task)))
    if source is None:
        raise ConfigError(f"{rule.metric!r} is not a {inputs.task} metric")
    where, key = source
    values = inputs.cv_metrics if where == "cv" else inputs.holdout_metrics
    value = float(values.get(key, float("nan")))
    numbers = {"value": value, "op": rule.op, "bound": rule.value, "on": where}
    if not math.isfinite(value):
        return GateResult("", "fail", f"{rule.metric} could not be computed ({value})", numbers)
    ok = rule.holds(value)
    verb = "meets" if ok else "breaks"
    return GateResult("", "pass" if ok else "fail",
                      f"{rule.metric} = {value:.4f} {verb} {rule.op} {rule.value:g}", numbers)


# Champion comparison ----------------------------------------------------------------------


def _champion_gate(spec: ChampionGateSpec, inputs: GateInputs) -> GateResult:
    if spec.mode == "off":
        return GateResult("", "skip", "turned off (gates.champion.mode: off)")
    champion = inputs.champion
    if champion is None:
        return GateResult("", "skip", inputs.no_champion)
    numbers: dict[str, Any] = {"champion_version": champion.version, "mode": spec.mode,
                               "margin_setting": spec.margin,
                               "excluded_rows": champion.excluded,
                               "note": champion.note}
    if champion.error is not None:
        return GateResult("", "fail", f"champion v{champion.version} could not be scored on the "
                                      f"holdout: {champion.error}", numbers, error=champion.error)
    if champion.rows is None or champion.prediction is None:
        raise ValueError("champion predictions are missing")
    rows = np.asarray(champion.rows)
    numbers["rows"] = int(len(rows))
    if len(rows) < spec.min_rows:
        return GateResult("", "fail", (
            f"only {len(rows)} holdout rows are unseen by champion v{champion.version} "
            f"({champion.excluded} it trained on were left out); the comparison needs "
            f"{spec.min_rows} (gates.champion.min_rows)"), numbers)
    challenger = np.asarray(inputs.prediction)[rows]
    if np.shape(challenger) != np.shape(champion.prediction):
        raise ValueError(f"the champion predicts shape {np.shape(champion.prediction)} and "
                         f"this model {np.shape(challenger)}; they do not predict the same thing")
    metric = spec.metric or inputs.metric
    comparison = compare_paired(inputs.task, metric, np.asarray(inputs.y)[rows], challenger,
                                champion.prediction, confidence=spec.confidence,
                                resamples=spec.bootstrap, method=spec.method, seed=inputs.seed)
    numbers.update(comparison.to_dict())
    margin, basis = _margin(spec, comparison)
    numbers.update(margin=margin, margin_setting=spec.margin, margin_basis=basis)
    bound = -margin if spec.mode == "not_worse" else margin
    ok = comparison.low > bound
    return GateResult("", "pass" if ok else "fail",
                      _describe(comparison, spec, champion, ok, margin, basis), numbers)


AUTO_MARGIN_FLOOR = 0.005
"""not_worse with ``margin: auto`` on a holdout large enough to resolve it: the margin."""


def _margin(spec: ChampionGateSpec, c: PairedComparison) -> tuple[float, str]:
    """The margin in force and, for ``auto``, why it is that (empty for a number).

    ``auto`` scales the margin to what the holdout can resolve, the width of the gain's
    interval. For not_worse it is the larger of that width and 0.005: the gate then passes
    unless the upper bound is below zero (the holdout shows the challenger worse), until the
    holdout is large enough that the interval is narrower than 0.005. For better it is 0.
    """
    if spec.margin != "auto":
        return float(spec.margin), ""
    level = f"{c.confidence:.0%}".replace("%", " %")
    if spec.mode == "better":
        return 0.0, "margin auto: better means the interval lies above zero"
    width = float(c.high - c.low)
    if width > AUTO_MARGIN_FLOOR:
        return width, (f"margin auto = {width:.4f}, the width of the {level} interval on "
                       f"{c.rows} rows: what this holdout can resolve (at least "
                       f"{AUTO_MARGIN_FLOOR:g}); a rollout judges finer differences")
    return AUTO_MARGIN_FLOOR, (f"margin auto = {AUTO_MARGIN_FLOOR:g}: the {level} interval on "
                               f"{c.rows} rows is {width:.4f} wide, finer than that")


def _describe(c: PairedComparison, spec: ChampionGateSpec, champion: ChampionPredictions,
              ok: bool, margin: float, basis: str) -> str:
    level = f"{c.confidence:.0%}".replace("%", " %")
    method = "DeLong" if c.method == "delong" else f"paired bootstrap, {c.resamples} resamples"
    direction = "higher" if c.greater_is_better else "lower"
    shown = f"{margin:.4g}"
    claim = (f"not worse by more than {shown}" if spec.mode == "not_worse"
             else f"better by more than {shown}" if margin else "better")
    bound = -margin if spec.mode == "not_worse" else margin
    verdict = (f"lower bound {c.low:+.4f} > {bound:+.4g}: {claim}" if ok
               else f"lower bound {c.low:+.4f} <= {bound:+.4g}: not shown to be {claim}")
    return (f"{c.metric} {c.challenger:.4f} vs champion v{champion.version} {c.champion:.4f} "
            f"({direction} is better): gain {c.gain:+.4f}, {level} CI [{c.low:+.4f}, "
            f"{c.high:+.4f}] ({method}, {c.rows} rows); {verdict}"
            + (f" [{basis}]" if basis else ""))


# CV stability -----------------------------------------------------------------------------


def _cv_gate(limit: float | None, inputs: GateInputs) -> GateResult:
    if limit is None:
        return GateResult("", "skip", "no limit set (gates.cv_std_max)")
    std = float(inputs.cv_metrics.get(f"{inputs.metric}_std", float("nan")))
    mean = float(inputs.cv_metrics.get(inputs.metric, float("nan")))
    numbers = {"metric": inputs.metric, "mean": mean, "std": std, "limit": limit}
    if not math.isfinite(std):
        return GateResult("", "fail", f"no cross-validated spread of {inputs.metric}", numbers)
    ok = std <= limit
    return GateResult("", "pass" if ok else "fail",
                      f"{inputs.metric} across folds {mean:.4f} ± {std:.4f}, "
                      f"limit {limit:g}: {'stable' if ok else 'too unstable'}", numbers)


# Robustness -------------------------------------------------------------------------------


def _robustness_gate(enabled: bool, inputs: GateInputs) -> GateResult:
    if not enabled:
        return GateResult("", "skip", "turned off (gates.robustness: false)")
    checks = run_robustness(predict_fn(inputs.model, inputs.task), inputs.holdout, inputs.kinds,
                            task=inputs.task, value_range=_value_range(inputs),
                            seed=inputs.seed)
    fast = inputs.fast_path
    if fast is not None:  # what serves must hold up too, not only the pipeline it mirrors
        checks += [dataclasses.replace(c, name=f"{fast.name}:{c.name}") for c in run_robustness(
            fast.predict_frame, inputs.holdout, inputs.kinds, task=inputs.task,
            value_range=_value_range(inputs), seed=inputs.seed)]
    failed = [c.name for c in checks if not c.passed]
    reason = (f"all {len(checks)} checks passed ({', '.join(c.name for c in checks)})"
              if not failed else f"{len(failed)} of {len(checks)} checks failed: "
                                 + "; ".join(f"{c.name}: {c.detail}" for c in checks
                                             if not c.passed))
    return GateResult("", "fail" if failed else "pass", reason[:1000],
                      {"failed": failed}, [c.to_dict() for c in checks])


def _value_range(inputs: GateInputs) -> tuple[float, float] | None:
    """Regression: predictions must stay within the target's range widened by its span."""
    if inputs.task != "regression" or inputs.target_range is None:
        return None
    lo, hi = inputs.target_range
    span = max(hi - lo, abs(hi), abs(lo), 1.0)
    return lo - span, hi + span


# Latency ----------------------------------------------------------------------------------


def _latency_gate(budget_ms: float | None, inputs: GateInputs) -> GateResult:
    if budget_ms is None:
        return GateResult("", "skip", "turned off (gates.latency_p99_ms: null)")
    frame = inputs.holdout.head(50)
    if len(frame) == 0:
        raise ValueError("no holdout rows to time")
    fast = inputs.fast_path
    path = fast.name if fast is not None else "pipeline"
    singles: list[Any]
    if fast is not None:  # what a server calls for one request
        predict: Callable[[Any], np.ndarray] = fast.predict_record
        singles = frame.to_dict(orient="records")
    else:
        predict = predict_fn(inputs.model, inputs.task)
        singles = [frame.iloc[[i]] for i in range(len(frame))]
    # The best of a few rounds: the gate measures the model's cost, not a moment when another
    # process had the CPU (the way timeit reports its best repeat).
    rounds = []
    for _ in range(_LATENCY_ROUNDS):
        rounds.append(_time_single_rows(predict, singles))
        if rounds[-1]["p99_ms"] <= budget_ms:
            break
    best = min(rounds, key=lambda r: r["p99_ms"])
    ok = best["p99_ms"] <= budget_ms
    numbers = {**best, "budget_ms": budget_ms, "rounds": len(rounds), "path": path,
               "p99_ms_by_round": [r["p99_ms"] for r in rounds]}
    return GateResult("", "pass" if ok else "fail",
                      f"single-row prediction ({path}) p50 {best['p50_ms']:.2f} ms, p99 "
                      f"{best['p99_ms']:.2f} ms over {best['calls']} calls; budget p99 "
                      f"{budget_ms:g} ms", numbers)


def _time_single_rows(predict: Callable[[Any], np.ndarray],
                      singles: list[Any]) -> dict[str, float]:
    for i in range(_LATENCY_WARMUP):
        predict(singles[i % len(singles)])
    times = np.empty(_LATENCY_CALLS)
    enabled = gc.isenabled()
    gc.disable()  # a collection is the process's cost, not the model's; serving freezes gc
    try:
        for i in range(_LATENCY_CALLS):
            started = time.perf_counter()
            predict(singles[i % len(singles)])
            times[i] = time.perf_counter() - started
    finally:
        if enabled:
            gc.enable()
    ms = times * 1000
    return {"calls": _LATENCY_CALLS, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


# Fairness ---------------------------------------------------------------------------------


def _fairness_gate(column: str, spec: GatesSpec, inputs: GateInputs) -> GateResult:
    fairness = spec.fairness
    if inputs.groups is None or column not in inputs.groups.columns:
        raise ValueError(f"sensitive column {column!r} is not in the data")
    # fairlearn imports at a cost (and only matters with sensitive columns): load it here.
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    raw = inputs.groups[column]
    group = raw.astype("string").fillna("(missing)").to_numpy(dtype=object)
    sizes = pd.Series(group).value_counts()
    counted = set(sizes[sizes >= fairness.min_group_rows].index)
    mask = np.isin(group, list(counted))
    small = sorted(str(g) for g in sizes.index if g not in counted)
    if len(counted) < 2:
        return GateResult("", "skip", (
            f"{column}: fewer than 2 groups with {fairness.min_group_rows}+ holdout rows "
            f"({len(sizes)} group(s) in all); nothing to compare"),
            {"groups": {str(k): int(v) for k, v in sizes.items()}})
    y, pred, g = np.asarray(inputs.y)[mask], np.asarray(inputs.prediction)[mask], group[mask]
    numbers: dict[str, Any] = {"column": column, "max_gap": fairness.max_gap,
                               "min_group_rows": fairness.min_group_rows,
                               "uncounted_groups": small}
    if inputs.task == "binary":
        label = (pred[:, 1] if pred.ndim == 2 else pred) >= 0.5
        frame = MetricFrame(
            metrics={"rows": count, "selection_rate": selection_rate,
                     "true_positive_rate": true_positive_rate,
                     "false_positive_rate": false_positive_rate},
            y_true=y, y_pred=label.astype(int), sensitive_features=g)
        gaps = {
            "demographic_parity_difference": float(demographic_parity_difference(
                y, label.astype(int), sensitive_features=g)),
            "equalized_odds_difference": float(equalized_odds_difference(
                y, label.astype(int), sensitive_features=g)),
        }
    elif inputs.task == "multiclass":
        frame = MetricFrame(metrics={"rows": count, "accuracy": _accuracy},
                            y_true=y, y_pred=pred.argmax(axis=1), sensitive_features=g)
        gaps = {"accuracy_difference": float(frame.difference()["accuracy"])}
    else:
        frame = MetricFrame(metrics={"rows": count, "mae": _mae}, y_true=y, y_pred=pred,
                            sensitive_features=g)
        overall = float(np.mean(np.abs(y - pred))) or 1.0
        gaps = {"relative_mae_difference": float(frame.difference()["mae"]) / overall}
    by_group = frame.by_group.reset_index()
    by_group.columns = ["group", *by_group.columns[1:]]
    checks = [_jsonable(row) for row in by_group.to_dict(orient="records")]
    numbers["gaps"] = gaps
    worst_name, worst = max(gaps.items(), key=lambda kv: kv[1])
    ok = worst <= fairness.max_gap
    shown = ", ".join(f"{k} {v:.3f}" for k, v in gaps.items())
    return GateResult("", "pass" if ok else "fail",
                      f"{column} ({len(counted)} groups): {shown}; largest {worst_name} "
                      f"{worst:.3f} {'<=' if ok else '>'} {fairness.max_gap:g}", numbers, checks)


def _accuracy(y: np.ndarray, label: np.ndarray) -> float:
    return float(np.mean(np.asarray(y) == np.asarray(label)))


def _mae(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y) - np.asarray(pred))))


def _jsonable(value: Any) -> Any:
    """Plain JSON types; NaN and infinity become None (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
