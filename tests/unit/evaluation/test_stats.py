from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from flywheel.evaluation import bootstrap_metric, compare_paired, compute_metrics, delong_roc_auc
from flywheel.evaluation._stats import weighted_metric


def _binary(n: int = 800, seed: int = 0, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * signal))).astype(np.int64)
    p = 1 / (1 + np.exp(-(signal + rng.normal(scale=noise, size=n))))
    return y, np.round(p, 2)  # rounding makes ties, which AUC must count as halves


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_weighted_metrics_with_unit_weights_equal_the_reported_metrics(task: str) -> None:
    rng = np.random.default_rng(1)
    n = 300
    if task == "binary":
        y, pred = _binary(n)
    elif task == "multiclass":
        y, pred = rng.integers(0, 3, n), rng.dirichlet([1, 1, 1], n)
    else:
        y, pred = rng.normal(size=n), rng.normal(size=n)
    for name, value in compute_metrics(task, y, pred).items():  # type: ignore[arg-type]
        assert weighted_metric(name, y, pred, np.ones((1, n)))[0] == pytest.approx(value, abs=1e-9)


def test_weighted_auc_equals_the_auc_of_the_rows_drawn() -> None:
    y, p = _binary(200)
    rng = np.random.default_rng(3)
    draw = rng.integers(0, 200, 200)
    weights = np.bincount(draw, minlength=200)[None, :].astype(float)
    assert weighted_metric("roc_auc", y, p, weights)[0] == pytest.approx(
        roc_auc_score(y[draw], p[draw]))


def test_delong_auc_equals_sklearn_and_its_error_matches_the_bootstrap() -> None:
    y, a = _binary(1000, seed=4)
    _, b = _binary(1000, seed=4, noise=1.3)
    aucs, _ = delong_roc_auc(y, np.vstack([a, b]))
    assert aucs == pytest.approx([roc_auc_score(y, a), roc_auc_score(y, b)])
    delong = compare_paired("binary", "roc_auc", y, a, b, method="delong")
    boot = compare_paired("binary", "roc_auc", y, a, b, method="bootstrap", resamples=1000)
    assert delong.gain == pytest.approx(boot.gain)
    assert delong.se == pytest.approx(boot.se, rel=0.2)
    assert delong.low == pytest.approx(boot.low, abs=0.01)


def test_identical_models_have_no_gain_and_an_interval_at_zero() -> None:
    y, p = _binary()
    for method in ("delong", "bootstrap"):
        c = compare_paired("binary", "roc_auc", y, p, p, method=method)
        assert c.gain == 0 and c.low == pytest.approx(0) and c.high == pytest.approx(0)


def test_a_clearly_better_challenger_has_an_interval_above_zero() -> None:
    rng = np.random.default_rng(5)
    signal = rng.normal(size=2000)
    y = (rng.random(2000) < 1 / (1 + np.exp(-2 * signal))).astype(np.int64)
    good = 1 / (1 + np.exp(-signal))
    poor = 1 / (1 + np.exp(-(signal + rng.normal(scale=2.0, size=2000))))
    for method in ("delong", "bootstrap"):
        c = compare_paired("binary", "roc_auc", y, good, poor, method=method)
        assert c.low > 0.02 and c.p_value < 0.01


def test_gain_is_positive_when_a_lower_is_better_metric_drops() -> None:
    rng = np.random.default_rng(6)
    y = rng.normal(size=1000)
    close, far = y + rng.normal(scale=0.3, size=1000), y + rng.normal(scale=1.0, size=1000)
    c = compare_paired("regression", "rmse", y, close, far)
    assert c.method == "bootstrap" and c.difference < 0 < c.low <= c.gain <= c.high


def test_bootstrap_interval_holds_the_metric_and_has_the_asked_confidence() -> None:
    y, p = _binary(600)
    narrow = bootstrap_metric("binary", "roc_auc", y, p, confidence=0.8)
    wide = bootstrap_metric("binary", "roc_auc", y, p, confidence=0.99)
    assert wide.low < narrow.low < narrow.value < narrow.high < wide.high


def test_comparison_refuses_nan_predictions_and_delong_for_another_metric() -> None:
    y, p = _binary(100)
    bad = p.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compare_paired("binary", "roc_auc", y, bad, p)
    with pytest.raises(ValueError, match="DeLong"):
        compare_paired("binary", "log_loss", y, p, p, method="delong")
    with pytest.raises(ValueError, match="rows"):
        compare_paired("binary", "roc_auc", y, p[:50], p)


@pytest.mark.parametrize(("metric", "method", "reps"), [("roc_auc", "delong", 400),
                                                        ("brier", "bootstrap", 200)])
def test_false_better_rate_of_the_champion_gate_under_the_null_is_at_most_alpha(
        metric: str, method: str, reps: int) -> None:
    import pandas as pd

    from flywheel.core.spec import ChampionGateSpec, GatesSpec
    from flywheel.evaluation import ChampionPredictions, GateInputs, run_gates

    champion = ChampionGateSpec.model_validate({"mode": "better", "margin": 0.0, "metric": metric,
                                                "method": method, "bootstrap": 400,
                                                "min_rows": 10})
    spec = GatesSpec(champion=champion, latency_p99_ms=None, robustness=False)
    rng = np.random.default_rng(11)
    n, better = 500, 0
    for rep in range(reps):  # two models equally good by construction: same noise, drawn anew
        signal = rng.normal(size=n)
        y = (rng.random(n) < 1 / (1 + np.exp(-1.5 * signal))).astype(np.int64)
        a, b = (1 / (1 + np.exp(-(signal + rng.normal(size=n)))) for _ in range(2))
        inputs = GateInputs(
            task="binary", metric=metric, model=None, holdout=pd.DataFrame(index=range(n)),
            y=y, prediction=np.column_stack([1 - a, a]), holdout_metrics={}, cv_metrics={},
            kinds={}, seed=rep, champion=ChampionPredictions(
                "1", rows=np.arange(n), prediction=np.column_stack([1 - b, b])))
        result = run_gates(spec, inputs).get("champion")
        better += result is not None and result.status == "pass"
    rate, alpha = better / reps, 1 - spec.champion.confidence
    print(f"{metric} ({method}): false 'better' in {better} of {reps} = {rate:.3f}, "
          f"alpha {alpha:.2f}")
    assert rate <= alpha
