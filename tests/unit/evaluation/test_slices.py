"""Error analysis (``evaluation/_slices.py``) and its tables in the model card."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from flywheel.core.spec import FeaturesSpec
from flywheel.data import infer_schema
from flywheel.evaluation import CardInputs, build_model_card, worst_slices
from flywheel.features import build_feature_pipeline, contribution_importance


def _frame(n: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Predictions that are good everywhere except for region "north" and for age >= 60."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"region": rng.choice(["north", "south", "east", "west"], n),
                          "age": rng.uniform(20, 80, n)})
    y = rng.integers(0, 2, n)
    good = np.clip(y + rng.normal(0, 0.25, n), 0.01, 0.99)
    noise = rng.uniform(0.01, 0.99, n)
    bad = (frame["region"] == "north").to_numpy()
    return frame, y, np.where(bad, noise, good)


def test_the_slice_where_the_model_fails_is_listed_first_with_its_interval_and_rows() -> None:
    frame, y, p = _frame()
    slices = worst_slices("binary", "roc_auc", frame, y, p)
    first = slices[0]
    assert first.condition == "region = north"
    assert first.rows == int((frame["region"] == "north").sum())
    assert first.low <= first.value <= first.high < first.overall
    assert first.value < 0.65 < 0.9 < first.overall
    assert all(s.value < s.overall for s in slices)  # only slices worse than all rows


def test_numeric_columns_are_sliced_into_quantile_ranges_and_missing_values() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    x = rng.uniform(0, 100, n)
    x[:100] = np.nan
    y = rng.normal(0, 1, n)
    error = np.where(np.nan_to_num(x, nan=50) >= 75, 3.0, 0.1)
    frame = pd.DataFrame({"x": x})
    slices = worst_slices("regression", "rmse", frame, y, y + rng.normal(0, 1, n) * error)
    assert slices[0].condition.startswith("x in [") and slices[0].condition.endswith("]")
    assert slices[0].rows == pytest.approx(475, abs=15)  # the top quarter of 1,900 values
    assert slices[0].low > slices[0].overall
    conditions = {s.condition for s in worst_slices("regression", "rmse", frame, y,
                                                    y + rng.normal(0, 1, n), min_rows=50,
                                                    top=50)}
    assert conditions <= {"x is missing", *(c for c in conditions if c.startswith("x in ["))}


def test_slices_smaller_than_min_rows_are_not_scored() -> None:
    frame, y, p = _frame(n=300)
    assert all(s.rows >= 100 for s in worst_slices("binary", "roc_auc", frame, y, p,
                                                   min_rows=100))


def test_mismatched_lengths_are_refused_saying_what_each_has() -> None:
    frame, y, p = _frame(n=100)
    with pytest.raises(ValueError, match="100 rows, 99 labels"):
        worst_slices("binary", "roc_auc", frame, y[:99], p)


def test_the_card_lists_the_worst_slices_with_intervals_and_global_contributions() -> None:
    frame, y, _ = _frame(n=1500)
    frame["target"] = np.where(frame["region"] == "north", np.random.default_rng(2)
                               .integers(0, 2, 1500), (frame["age"] > 50).astype(int))
    schema = infer_schema(frame, "target")
    x = frame[schema.feature_columns]
    model = Pipeline([("features", build_feature_pipeline(schema, FeaturesSpec(),
                                                          task="binary")),
                      ("model", lgb.LGBMClassifier(n_estimators=30, verbosity=-1))])
    model.fit(x.iloc[:1000], frame["target"].iloc[:1000])
    holdout, labels = x.iloc[1000:], frame["target"].to_numpy()[1000:]
    importance = contribution_importance(model, holdout, task="binary")
    assert importance is not None and next(iter(importance)) == "age"
    card = build_model_card(CardInputs(
        model_name="m", version="1", task="binary", metric="roc_auc", model=model,
        holdout=holdout, y=labels, prediction=model.predict_proba(holdout), cv_metrics={},
        gates=None, facts={}, data={}, classes=("0", "1"), contributions=importance))
    assert card.slices[0].condition == "region = north"
    for text in ("Where the model is worst", "region = north", "Contributions",
                 "mean |contribution|"):
        assert text in card.html and text in card.markdown
    first = card.slices[0]
    assert f"[{first.low:.4f}, {first.high:.4f}]" in card.html
