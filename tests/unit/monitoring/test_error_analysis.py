"""Monitoring's error analysis (worst slices of the labelled rows) and how the model's
contribution shares move from the reference to the window."""

from __future__ import annotations

import dataclasses

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from flywheel.core.spec import FeaturesSpec, MonitoringSpec
from flywheel.data import infer_schema
from flywheel.features import build_feature_pipeline, contribution_importance
from flywheel.monitoring import MonitoredVersion, monitor_window, render_report, window_from_frame
from tests.conftest import make_mixed
from tests.unit.monitoring.conftest import CLASSES, MIXED_FEATURES, mixed_proba


def test_the_monitoring_report_lists_the_slice_where_labelled_rows_fail(
        version: MonitoredVersion) -> None:
    frame = make_mixed(2000, seed=4)
    proba = mixed_proba(frame)
    blue = (frame["colour"] == "blue").to_numpy()
    noise = np.random.default_rng(0).uniform(0.01, 0.99, blue.sum())
    proba[blue] = np.column_stack([1 - noise, noise])  # the model knows nothing about blue
    window = window_from_frame(frame, features=MIXED_FEATURES, target="label", task="binary",
                               classes=CLASSES, source="test", proba=proba)
    result = monitor_window(window, version, MonitoringSpec())
    assert result.performance is not None
    first = result.performance.slices[0]
    assert first.condition == "colour = blue" and first.rows == int(blue.sum())
    assert first.low <= first.value <= first.high < first.overall
    page = render_report(result)
    assert "Where the model is worst" in page and "colour = blue" in page
    assert result.to_dict()["performance"]["slices"][0]["condition"] == "colour = blue"


def _explained(version: MonitoredVersion) -> MonitoredVersion:
    train = make_mixed(3000, seed=1)
    schema = infer_schema(train[[*MIXED_FEATURES, "label"]], "label")
    model = Pipeline([("features", build_feature_pipeline(schema, FeaturesSpec(),
                                                          task="binary")),
                      ("model", lgb.LGBMClassifier(n_estimators=30, verbosity=-1))])
    model.fit(train[list(MIXED_FEATURES)], (train["label"] == "yes").to_numpy(int))
    return dataclasses.replace(version, explain=lambda frame: contribution_importance(
        model, frame, task="binary"))


def test_contribution_shares_hold_still_on_training_like_data_and_move_when_x_freezes(
        version: MonitoredVersion) -> None:
    explained = _explained(version)
    same = make_mixed(1500, seed=2)
    steady = monitor_window(window_from_frame(same, features=MIXED_FEATURES, target="label",
                                              task="binary", classes=CLASSES, source="test",
                                              proba=mixed_proba(same)), explained,
                            MonitoringSpec())
    assert steady.contributions is not None
    assert steady.metrics["contribution_shift"] < 0.1
    frozen = same.assign(x=pd.Series(0.0, index=same.index))
    moved = monitor_window(window_from_frame(frozen, features=MIXED_FEATURES, target="label",
                                             task="binary", classes=CLASSES, source="test",
                                             proba=mixed_proba(frozen)), explained,
                           MonitoringSpec())
    assert moved.contributions is not None
    assert moved.metrics["contribution_shift"] > 0.2 + steady.metrics["contribution_shift"]
    column, before, after = moved.contributions.rows()[0]
    assert column == "x" and after < before
    page = render_report(moved)
    assert "Contributions" in page and "contribution_shift" in page
    assert moved.to_dict()["contributions"]["distance"] == moved.metrics["contribution_shift"]


def test_a_version_without_an_explainer_has_no_contribution_section(
        version: MonitoredVersion) -> None:
    same = make_mixed(600, seed=3)
    result = monitor_window(window_from_frame(same, features=MIXED_FEATURES, target="label",
                                              task="binary", classes=CLASSES, source="test",
                                              proba=mixed_proba(same)), version,
                            MonitoringSpec())
    assert result.contributions is None and "contribution_shift" not in result.metrics
