"""Performance without labels: CBPE from a holdout-calibrated model."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from flywheel.core.errors import MonitoringError
from flywheel.demo import FEATURES, TARGET, load_flights
from flywheel.monitoring import Calibrator, estimate_performance, fit_calibrator


def _encode(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: frame[c].astype("category") if frame[c].dtype.kind not in "fi"
                         else frame[c] for c in FEATURES})


def test_expected_metrics_match_the_truth_when_labels_follow_the_calibrated_probability() -> None:
    rng = np.random.default_rng(0)
    score = rng.random(20_000)
    truth = 1 / (1 + np.exp(-6 * (score - 0.5)))  # the model's scores, miscalibrated
    calibrator = fit_calibrator(rng.random(20_000) < truth,
                                np.column_stack([1 - score, score]), ("no", "yes"))
    fresh = rng.random(50_000)
    p_true = 1 / (1 + np.exp(-6 * (fresh - 0.5)))
    y = rng.random(50_000) < p_true
    estimate = estimate_performance(calibrator, np.column_stack([1 - fresh, fresh]))
    assert estimate["estimated_roc_auc"] == pytest.approx(roc_auc_score(y, fresh), abs=0.01)
    assert estimate["estimated_accuracy"] == pytest.approx(np.mean((fresh > 0.5) == y), abs=0.01)


def test_multiclass_calibration_gives_rows_that_sum_to_one() -> None:
    rng = np.random.default_rng(1)
    proba = rng.dirichlet([1, 1, 1], size=3000)
    y = np.array([rng.choice(3, p=p) for p in proba])
    calibrator = fit_calibrator(y, proba, ("a", "b", "c"))
    assert np.allclose(calibrator.calibrate(proba).sum(axis=1), 1)
    estimate = estimate_performance(calibrator, proba)
    assert 0.5 < estimate["estimated_roc_auc"] < 0.9


def test_the_calibrator_survives_json_and_refuses_the_wrong_number_of_classes() -> None:
    calibrator = fit_calibrator(np.array([0, 1, 1, 0]), np.array([[.8, .2], [.3, .7], [.4, .6],
                                                                [.6, .4]]), ("n", "y"))
    back = Calibrator.from_json(calibrator.to_json())
    assert back.classes == ("n", "y") and np.allclose(back.x[0], calibrator.x[0])
    with pytest.raises(MonitoringError, match="3 columns"):
        back.calibrate(np.ones((2, 3)) / 3)
    with pytest.raises(MonitoringError, match="retrain"):
        Calibrator.from_json("{}")


@pytest.mark.slow
def test_on_flights_reweighted_towards_julys_mix_the_estimate_is_within_003_of_measured() -> None:
    """Covariate shift only: labelled flights the model never saw, weighted to July's feature
    mix, keep their own labels, so P(late | features) does not change."""
    flights = load_flights()
    data = flights.sample(frac=1.0, random_state=0).reset_index(drop=True)
    train, holdout, pool = data.iloc[:30_000], data.iloc[30_000:45_000], data.iloc[45_000:]
    model = lgb.LGBMClassifier(n_estimators=200, num_leaves=31, learning_rate=0.05,
                               n_jobs=1, verbose=-1, random_state=0)
    model.fit(_encode(train), train[TARGET])
    calibrator = fit_calibrator(holdout[TARGET].to_numpy(dtype=int),
                                model.predict_proba(_encode(holdout)), ("False", "True"))
    july = flights[flights["month"] == 7].sample(10_000, random_state=1)
    some = pool.sample(30_000, random_state=2)
    domain = lgb.LGBMClassifier(n_estimators=100, num_leaves=15, n_jobs=1, verbose=-1,
                                random_state=0)
    domain.fit(_encode(pd.concat([some, july], ignore_index=True)),
               np.r_[np.zeros(len(some)), np.ones(len(july))])
    pool_x = _encode(pool)
    p_july = np.clip(domain.predict_proba(pool_x)[:, 1], 1e-3, 1 - 1e-3)
    weights = p_july / (1 - p_july)
    proba = model.predict_proba(pool_x)
    measured = roc_auc_score(pool[TARGET], proba[:, 1], sample_weight=weights)
    before = roc_auc_score(pool[TARGET], proba[:, 1])
    estimated = estimate_performance(calibrator, proba, weights)["estimated_roc_auc"]
    print(f"CBPE under covariate shift towards July: estimated ROC AUC {estimated:.4f}, "
          f"measured {measured:.4f} (difference {estimated - measured:+.4f}; "
          f"{before:.4f} before the shift)")
    assert measured - before > 0.02  # the shift moved the real performance
    assert abs(estimated - measured) < 0.03
