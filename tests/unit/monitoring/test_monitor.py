"""One monitoring run: every section it can compute, the rest noted; rules checked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flywheel.core.spec import MonitoringSpec, RetrainingSpec
from flywheel.monitoring import (
    MonitoredVersion,
    Window,
    evaluate_rules,
    monitor_window,
    window_from_frame,
)
from tests.conftest import make_mixed
from tests.unit.monitoring.conftest import CLASSES, MIXED_FEATURES, mixed_proba, mixed_window


def test_a_labelled_window_has_measured_and_estimated_performance_side_by_side(
        version: MonitoredVersion) -> None:
    result = monitor_window(mixed_window(make_mixed(1500, seed=2)), version, MonitoringSpec())
    m = result.metrics
    assert m["labelled_rows"] == 1500 and m["roc_auc_low"] < m["roc_auc"] < m["roc_auc_high"]
    assert abs(m["estimated_roc_auc"] - m["roc_auc"]) < 0.05
    assert m["roc_auc_drop"] == pytest.approx(0.80 - m["roc_auc"])
    assert result.performance is not None and "no concept drift" in str(
        result.performance.assumption)
    assert m["dataset_drift"] == 0 and m["multivariate_drift"] == 0 and result.complete
    assert not result.alerted


def test_a_shifted_window_fires_the_drift_rule(version: MonitoredVersion) -> None:
    shifted = make_mixed(1500, seed=3)
    shifted["x"] += 2.0
    shifted["count"] = shifted["count"] * 3
    spec = MonitoringSpec.model_validate({"alerts": {"rules": ["drift_share > 0.3"]}})
    result = monitor_window(mixed_window(shifted, labels=False), version, spec)
    assert {"x", "count"} <= set(result.drift.drifted)  # type: ignore[union-attr]
    assert result.metrics["prediction_drift"] == 1 and "roc_auc" not in result.metrics
    assert [a.rule for a in result.alerts] == ["drift_share > 0.3"]
    assert result.sent is None and not result.held_back(result.alerts[0])  # nothing sent here


def test_an_empty_window_is_a_partial_report_that_says_so(version: MonitoredVersion) -> None:
    result = monitor_window(mixed_window(make_mixed(10).iloc[:0]), version, MonitoringSpec())
    assert result.drift is None and result.performance is None and not result.complete
    assert any("no rows" in n for n in result.notes) and result.metrics["rows"] == 0


def test_a_window_below_min_rows_gets_quality_but_no_drift(version: MonitoredVersion) -> None:
    result = monitor_window(mixed_window(make_mixed(20)), version, MonitoringSpec())
    assert result.drift is None and result.quality is not None
    assert any("fewer than monitoring.min_rows" in n for n in result.notes)


def test_a_missing_column_and_no_calibrator_leave_notes_not_errors(
        version: MonitoredVersion) -> None:
    import dataclasses

    bare = dataclasses.replace(version, calibrator=None)
    frame = make_mixed(500, seed=4)
    window = window_from_frame(frame.drop(columns=["colour"]), features=MIXED_FEATURES,
                               target="label", task="binary", classes=CLASSES, source="t",
                               proba=mixed_proba(frame))
    result = monitor_window(window, bare, MonitoringSpec())
    notes = " | ".join(result.notes)
    assert "colour" in notes and "no calibrator" in notes
    assert "estimated_roc_auc" not in result.metrics and "roc_auc" in result.metrics


def test_sampling_is_reported_when_the_spec_asks_for_it(version: MonitoredVersion) -> None:
    spec = MonitoringSpec(sample_rows=200)
    result = monitor_window(mixed_window(make_mixed(1000, seed=5)), version, spec)
    assert result.window.sampled == 200
    assert any("sampled 200 of 1,000 rows" in n for n in result.notes)
    assert result.drift.columns[0].current_rows <= 200  # type: ignore[union-attr]


def test_the_json_form_holds_every_verdict_and_has_no_nan(version: MonitoredVersion) -> None:
    import json

    result = monitor_window(mixed_window(make_mixed(300, seed=6)), version, MonitoringSpec())
    data = json.loads(result.to_json())
    assert {"column", "method", "score", "threshold", "p_value", "drifted"} <= set(
        data["drift"]["columns"][0])
    assert "NaN" not in result.to_json() and data["rules"][0]["rule"] == "dataset_drift > 0"


def _unlabelled(frame: pd.DataFrame) -> Window:
    return mixed_window(frame, labels=False)


def test_a_gross_shift_alerts_with_the_default_rules_and_no_labels(
        version: MonitoredVersion) -> None:
    shifted = make_mixed(1000, seed=7)
    shifted["x"] = shifted["x"] * 3
    result = monitor_window(_unlabelled(shifted), version, MonitoringSpec())
    fired = {a.rule for a in result.alerts}
    assert {"dataset_drift > 0", "multivariate_drift > 0", "out_of_range_rate_max > 0.05"
            } <= fired
    assert "roc_auc" not in result.metrics and result.metrics["multivariate_p"] < 0.05
    assert result.drift is not None and result.drift.multivariate_drift


def test_a_sample_of_the_training_data_raises_no_alert_with_the_default_rules(
        version: MonitoredVersion) -> None:
    train = make_mixed(3000, seed=1)  # the rows the version's reference was built from
    for seed in range(3):
        sample = train.sample(800, random_state=seed)
        result = monitor_window(mixed_window(sample), version, MonitoringSpec(), seed=seed)
        assert result.alerts == () and result.metrics["multivariate_drift"] == 0


def test_data_quality_violations_alert_by_default_without_labels(
        version: MonitoredVersion) -> None:
    broken = make_mixed(600, seed=8)
    broken.loc[broken.index[:120], "count"] = np.nan  # 20 % nulls in a column that had none
    broken.loc[broken.index[:60], "colour"] = "purple"  # 10 % unseen
    window = window_from_frame(broken.drop(columns=["label", "flag"]), features=MIXED_FEATURES,
                               target="label", task="binary", classes=CLASSES, source="t",
                               proba=mixed_proba(broken))
    result = monitor_window(window, version, MonitoringSpec())
    fired = {a.rule for a in result.alerts}
    assert {"missing_columns > 0", "null_rate_excess_max > 0.05",
            "unseen_category_rate_max > 0.05"} <= fired
    assert result.metrics["null_rate_excess_max"] == pytest.approx(0.2)


def test_the_default_retraining_triggers_hold_on_a_gross_shift_without_labels(
        version: MonitoredVersion) -> None:
    shifted = make_mixed(1000, seed=9)
    shifted["x"] = shifted["x"] * 3
    metrics = monitor_window(_unlabelled(shifted), version, MonitoringSpec()).metrics
    held = {str(o.rule) for o in evaluate_rules(RetrainingSpec().triggers, metrics) if o.fired}
    assert {"dataset_drift > 0", "multivariate_drift > 0",
            "out_of_range_rate_max > 0.05"} <= held
    quiet = monitor_window(mixed_window(make_mixed(3000, seed=1).sample(800, random_state=4)),
                           version, MonitoringSpec()).metrics
    assert not any(o.fired for o in evaluate_rules(RetrainingSpec().triggers, quiet))


def test_values_near_the_float_limits_are_compared_without_a_numpy_warning(
        version: MonitoredVersion) -> None:
    import warnings

    frame = make_mixed(800, seed=10)
    proba = mixed_proba(frame)
    frame.loc[frame.index[:5], "x"] = 1.5e308  # sentinels an upstream system writes
    frame.loc[frame.index[5:10], "x"] = -1.5e308
    frame.loc[frame.index[10:15], "count"] = 2**62
    window = window_from_frame(frame.drop(columns=["label"]), features=MIXED_FEATURES,
                               target="label", task="binary", classes=CLASSES, source="t",
                               proba=proba)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = monitor_window(window, version, MonitoringSpec())
    assert result.drift is not None and result.multivariate is not None
    assert not any("could not be computed" in n for n in result.notes)
    assert result.metrics["out_of_range_rate_max"] == pytest.approx(10 / 800)
    x = result.drift.column("x")
    assert x is not None and x.score == x.score and len(x.shares[0]) == 30
