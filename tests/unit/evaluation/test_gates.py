from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline

from flywheel.core.errors import ConfigError
from flywheel.core.spec import FeaturesSpec, GatesSpec
from flywheel.data import infer_schema
from flywheel.evaluation import (
    ChampionPredictions,
    GateInputs,
    GateReport,
    check_gates_config,
    compute_metrics,
    run_gates,
)
from flywheel.features import build_feature_pipeline
from tests.conftest import make_mixed

QUIET = {"latency_p99_ms": None, "robustness": False}


def _fitted(task: str = "binary", n: int = 600) -> tuple[Any, pd.DataFrame, np.ndarray, dict]:
    frame = make_mixed(n, seed=0)
    if task == "regression":
        frame["label"] = frame["x"] * 3 + frame["count"] * 0.1
    schema = infer_schema(frame, "label", task=task)  # type: ignore[arg-type]
    features = schema.feature_columns
    y = (frame["label"] == "yes").to_numpy(np.int64) if task == "binary" \
        else frame["label"].to_numpy(float)
    learner = LogisticRegression(max_iter=500) if task == "binary" else LinearRegression()
    features_step = build_feature_pipeline(
        schema, FeaturesSpec(), task=task, scale_numeric=True)  # type: ignore[arg-type]
    model = Pipeline([("features", features_step), ("model", learner)]).fit(frame[features], y)
    kinds = {c: schema.columns[c].kind for c in features}
    return model, frame[features], y, kinds


def _inputs(model: Any, x: pd.DataFrame, y: np.ndarray, kinds: dict, *, task: str = "binary",
            **extra: Any) -> GateInputs:
    pred = model.predict_proba(x) if task == "binary" else model.predict(x)
    metrics = compute_metrics(task, y, pred)  # type: ignore[arg-type]
    metric = "roc_auc" if task == "binary" else "rmse"
    defaults = dict(task=task, metric=metric, model=model, holdout=x, y=y, prediction=pred,
                    holdout_metrics=metrics, cv_metrics={metric: metrics[metric],
                                                        f"{metric}_std": 0.01}, kinds=kinds)
    return GateInputs(**{**defaults, **extra})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def binary() -> tuple[Any, pd.DataFrame, np.ndarray, dict]:
    return _fitted("binary")


def test_thresholds_pass_and_fail_on_holdout_and_cv_values(binary: tuple) -> None:
    spec = GatesSpec.model_validate({**QUIET, "thresholds": {
        "roc_auc": ">= 0.5", "holdout_log_loss": "< 0.0001", "cv_roc_auc_std": "<= 0.02"}})
    report = run_gates(spec, _inputs(*binary))
    status = {r.name: r.status for r in report.results}
    assert status["threshold:roc_auc"] == "pass"
    assert status["threshold:holdout_log_loss"] == "fail"
    assert status["threshold:cv_roc_auc_std"] == "pass"
    assert not report.passed and report.summary().startswith("1 of ")
    assert report.get("threshold:holdout_log_loss").values["bound"] == 0.0001


def test_a_gate_that_crashes_is_a_failed_gate_with_its_error(binary: tuple) -> None:
    class Broken:
        def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
            raise RuntimeError("model exploded")

    model, x, y, kinds = binary
    inputs = _inputs(model, x, y, kinds)
    spec = GatesSpec(latency_p99_ms=5.0, robustness=True)
    report = run_gates(spec, GateInputs(**{**inputs.__dict__, "model": Broken()}))
    latency = report.get("latency")
    assert latency.status == "fail" and "model exploded" in latency.error
    robustness = report.get("robustness")
    assert robustness.status == "fail" and all(not c["passed"] for c in robustness.checks)
    assert not report.passed


def test_unknown_threshold_metric_is_refused_before_training() -> None:
    spec = GatesSpec.model_validate({"thresholds": {"auc": ">= 0.8"}})
    with pytest.raises(ConfigError, match="gates.thresholds\\[0\\].metric: 'auc' is not a binary"):
        check_gates_config(spec, "binary", "roc_auc")
    with pytest.raises(ConfigError, match="delong is for roc_auc"):
        check_gates_config(GatesSpec.model_validate({"champion": {"method": "delong"}}),
                           "regression", "rmse")


def test_champion_gate_skips_without_a_champion_and_fails_when_it_cannot_be_scored(
        binary: tuple) -> None:
    spec = GatesSpec(**QUIET)
    assert run_gates(spec, _inputs(*binary)).get("champion").status == "skip"
    broken = ChampionPredictions("1", error="ModelIntegrityError: files changed")
    result = run_gates(spec, _inputs(*binary, champion=broken)).get("champion")
    assert result.status == "fail" and "files changed" in result.reason


def test_champion_gate_fails_when_too_few_rows_are_unseen_by_the_champion(binary: tuple) -> None:
    model, x, y, kinds = binary
    few = ChampionPredictions("1", rows=np.arange(20), prediction=model.predict_proba(x)[:20],
                              excluded=len(x) - 20)
    result = run_gates(GatesSpec(**QUIET), _inputs(model, x, y, kinds, champion=few))
    assert result.get("champion").status == "fail"
    assert "only 20 holdout rows are unseen" in result.get("champion").reason


def test_champion_gate_passes_an_equal_model_not_worse_and_fails_it_as_better(
        binary: tuple) -> None:
    model, x, y, kinds = binary
    same = ChampionPredictions("1", rows=np.arange(len(x)), prediction=model.predict_proba(x))
    not_worse = run_gates(GatesSpec(**QUIET), _inputs(model, x, y, kinds, champion=same))
    better = run_gates(GatesSpec.model_validate({**QUIET, "champion": {"mode": "better"}}),
                       _inputs(model, x, y, kinds, champion=same))
    assert not_worse.get("champion").status == "pass"
    assert better.get("champion").status == "fail"
    values = not_worse.get("champion").values
    assert values["method"] == "delong" and values["low"] == pytest.approx(0)
    assert "95 % CI [" in not_worse.get("champion").reason


def test_champion_gate_fails_a_worse_challenger_with_its_interval(binary: tuple) -> None:
    model, x, y, kinds = binary
    rng = np.random.default_rng(0)
    worse = np.clip(model.predict_proba(x)[:, 1] + rng.normal(scale=0.4, size=len(x)), 0, 1)
    inputs = _inputs(model, x, y, kinds, prediction=np.column_stack([1 - worse, worse]),
                     champion=ChampionPredictions("1", rows=np.arange(len(x)),
                                                  prediction=model.predict_proba(x)))
    result = run_gates(GatesSpec(**QUIET), inputs).get("champion")
    assert result.status == "fail" and result.values["high"] < 0
    assert "not shown to be not worse by more than" in result.reason
    assert "margin auto" in result.reason
    fixed = run_gates(GatesSpec.model_validate({**QUIET, "champion": {"margin": 0.005}}),
                      inputs).get("champion")
    assert "not shown to be not worse by more than 0.005" in fixed.reason


def _small_holdout_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """476 holdout rows; two models of ROC AUC 0.907 and 0.909 (the newer slightly higher)."""
    rng = np.random.default_rng(21)
    y = (rng.random(476) < 0.3).astype(np.int64)
    base = y * 1.9 + rng.normal(size=len(y))
    champion, challenger = (1 / (1 + np.exp(-(base + rng.normal(scale=0.45, size=len(y)))))
                            for _ in range(2))
    return y, np.column_stack([1 - champion, champion]), \
        np.column_stack([1 - challenger, challenger])


def _pair_inputs(binary: tuple, y: np.ndarray, champion: np.ndarray,
                 challenger: np.ndarray) -> GateInputs:
    model, x, _, kinds = binary
    x = x.head(len(y)).reset_index(drop=True)
    return _inputs(model, x, y, kinds, prediction=challenger,
                   holdout_metrics=compute_metrics("binary", y, challenger),
                   champion=ChampionPredictions("1", rows=np.arange(len(y)),
                                                prediction=champion))


def test_a_slightly_better_version_passes_the_default_gate_on_a_small_holdout(
        binary: tuple) -> None:
    y, champion, challenger = _small_holdout_pair()
    inputs = _pair_inputs(binary, y, champion, challenger)
    fixed = run_gates(GatesSpec.model_validate({**QUIET, "champion": {"margin": 0.005}}),
                      inputs).get("champion")
    # The case as reported: a higher ROC AUC, and no way through a margin of 0.005.
    assert fixed.values["gain"] > 0 and fixed.values["low"] < -0.005
    assert fixed.status == "fail"
    default = run_gates(GatesSpec(**QUIET), inputs).get("champion")
    assert default.status == "pass"
    width = default.values["high"] - default.values["low"]
    assert default.values["margin"] == pytest.approx(width) and width > 0.03
    assert default.values["margin_setting"] == "auto"
    assert "margin auto = " in default.reason and "476 rows" in default.reason
    assert "what this holdout can resolve" in default.reason


def test_the_default_gate_still_fails_a_version_the_small_holdout_shows_worse(
        binary: tuple) -> None:
    y, champion, _ = _small_holdout_pair()
    rng = np.random.default_rng(1)
    worse = np.clip(champion[:, 1] + rng.normal(scale=0.35, size=len(y)), 0, 1)
    result = run_gates(GatesSpec(**QUIET), _pair_inputs(
        binary, y, champion, np.column_stack([1 - worse, worse]))).get("champion")
    assert result.values["high"] < 0 and result.status == "fail"


def test_on_a_large_holdout_the_default_margin_is_the_fixed_floor(binary: tuple) -> None:
    model, x, y, kinds = binary
    same = ChampionPredictions("1", rows=np.arange(len(x)), prediction=model.predict_proba(x))
    result = run_gates(GatesSpec(**QUIET), _inputs(model, x, y, kinds, champion=same))
    champion = result.get("champion")
    assert champion.status == "pass" and champion.values["margin"] == 0.005
    assert "margin auto = 0.005" in champion.reason


def test_cv_stability_compares_the_spread_across_folds_with_the_limit(binary: tuple) -> None:
    ok = run_gates(GatesSpec(**QUIET, cv_std_max=0.05), _inputs(*binary)).get("cv_stability")
    bad = run_gates(GatesSpec(**QUIET, cv_std_max=0.001), _inputs(*binary)).get("cv_stability")
    assert (ok.status, bad.status) == ("pass", "fail")


def test_robustness_lists_every_check_and_a_sound_pipeline_passes_them(binary: tuple) -> None:
    result = run_gates(GatesSpec(latency_p99_ms=None), _inputs(*binary)).get("robustness")
    names = [c["name"] for c in result.checks]
    assert names == ["baseline", "missing_all", "missing_each", "unseen_categories",
                     "extreme_numeric", "shuffled_columns", "single_row"]
    assert result.status == "pass", result.reason


def test_robustness_fails_a_model_that_returns_nan_for_missing_values(binary: tuple) -> None:
    model, x, y, kinds = binary

    class NanOnMissing:
        def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
            out = model.predict_proba(frame)
            out[frame["x"].isna().to_numpy()] = np.nan
            return out

    inputs = _inputs(model, x, y, kinds)
    result = run_gates(GatesSpec(latency_p99_ms=None),
                       GateInputs(**{**inputs.__dict__, "model": NanOnMissing()})).get("robustness")
    failed = {c["name"]: c for c in result.checks if not c["passed"]}
    assert set(failed) == {"missing_all", "missing_each"}
    assert failed["missing_each"]["failing_columns"] == ["x"]


def test_regression_predictions_must_stay_near_the_target_range() -> None:
    model, x, y, kinds = _fitted("regression")
    inputs = _inputs(model, x, y, kinds, task="regression",
                     target_range=(float(y.min()), float(y.max())))
    result = run_gates(GatesSpec(latency_p99_ms=None), inputs).get("robustness")
    failed = {c["name"] for c in result.checks if not c["passed"]}
    assert failed == {"extreme_numeric"}  # a linear model extrapolates 1e12 inputs


def test_latency_gate_measures_single_rows_against_the_budget(binary: tuple) -> None:
    class Timed:
        def __init__(self, seconds: float) -> None:
            self.seconds = seconds

        def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
            time.sleep(self.seconds)
            return np.full((len(frame), 2), 0.5)

    inputs = _inputs(*binary)
    slow = run_gates(GatesSpec(robustness=False, latency_p99_ms=1.0),
                     GateInputs(**{**inputs.__dict__, "model": Timed(0.002)})).get("latency")
    assert slow.status == "fail" and slow.values["p50_ms"] >= 2.0
    assert slow.values["rounds"] == 2  # a failing round is measured again before failing
    fast = run_gates(GatesSpec(robustness=False, latency_p99_ms=1000.0),
                     GateInputs(**{**inputs.__dict__, "model": Timed(0.0)})).get("latency")
    assert fast.status == "pass" and fast.values["calls"] == 100
    assert "p99" in fast.reason and fast.values["budget_ms"] == 1000.0


def test_fairness_reports_groups_and_fails_a_model_that_favours_one(binary: tuple) -> None:
    model, x, y, kinds = binary
    rng = np.random.default_rng(0)
    group = pd.DataFrame({"sex": rng.choice(["f", "m"], size=len(x)),
                          "tiny": ["a"] * (len(x) - 5) + ["b"] * 5})
    biased = np.where(group["sex"] == "f", 0.9, 0.1)
    spec = GatesSpec.model_validate({**QUIET, "fairness": {
        "sensitive_columns": ["sex", "tiny"], "max_gap": 0.2}})
    fair = run_gates(spec, _inputs(model, x, y, kinds, groups=group))
    unfair = run_gates(spec, _inputs(model, x, y, kinds, groups=group,
                                     prediction=np.column_stack([1 - biased, biased])))
    assert fair.get("fairness:sex").status == "pass"
    sex = unfair.get("fairness:sex")
    assert sex.status == "fail"
    assert sex.values["gaps"]["demographic_parity_difference"] == pytest.approx(1.0)
    assert {c["group"] for c in sex.checks} == {"f", "m"}
    assert "selection_rate" in sex.checks[0]
    assert fair.get("fairness:tiny").status == "skip"  # one group of 30+ rows: nothing to compare


def test_report_round_trips_through_json_and_becomes_version_tags(binary: tuple) -> None:
    report = run_gates(GatesSpec.model_validate({**QUIET, "thresholds": {"roc_auc": "> 2"}}),
                       _inputs(*binary))
    again = GateReport.from_dict(__import__("json").loads(report.to_json()))
    assert again == report
    tags = report.tags()
    assert tags["flywheel.gates.passed"] == "false"
    assert tags["flywheel.gates.threshold:roc_auc"].startswith("fail: roc_auc = ")
    assert tags["flywheel.gates.champion"].startswith("skip: ")


def test_gates_spec_reads_thresholds_as_a_mapping_and_reports_bad_ones_by_path() -> None:
    import yaml

    from flywheel.core.spec import parse_spec
    from flywheel.core.template import render_spec

    base = {"name": "x", "data": {"path": "d.csv"}, "target": {"column": "y", "task": "binary"}}
    gates = {"thresholds": {"roc_auc": ">= 0.80", "cv_rmse_std": "<1e-2"},
             "fairness": {"sensitive_columns": ["sex"]}}
    spec = parse_spec({**base, "gates": gates, "promotion": {"auto": True}})
    assert [str(t) for t in spec.gates.thresholds] == ["roc_auc >= 0.8", "cv_rmse_std < 0.01"]
    assert parse_spec(yaml.safe_load(render_spec(spec, inferred={}))) == spec
    with pytest.raises(ConfigError) as info:
        parse_spec({**base, "gates": {"thresholds": {"roc_auc": "at least 0.8"},
                                      "champion": {"confidance": 0.9, "mode": "best"}}})
    problems = info.value.problems
    assert 'gates.thresholds: roc_auc: must look like ">= 0.80"' in problems[0]
    assert "gates.champion.confidance: unknown key; did you mean 'confidence'?" in problems
    assert any(p.startswith("gates.champion.mode: must be one of") for p in problems)
