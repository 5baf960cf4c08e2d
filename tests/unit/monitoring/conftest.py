from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flywheel.data import infer_schema
from flywheel.demo import FEATURES, load_flights, months
from flywheel.monitoring import (
    MonitoredVersion,
    Window,
    build_reference,
    fit_calibrator,
    prediction_columns,
    window_from_frame,
)
from tests.conftest import make_mixed


@pytest.fixture(scope="session")
def jan_feb() -> pd.DataFrame:
    return months(load_flights(), 1, 2)


@pytest.fixture(scope="session")
def july() -> pd.DataFrame:
    return months(load_flights(), 7)


@pytest.fixture(scope="session")
def flight_kinds(jan_feb: pd.DataFrame) -> dict[str, str]:
    return {c: "numeric" if jan_feb[c].dtype.kind in "fi" else "categorical" for c in FEATURES}


MIXED_FEATURES = ("x", "count", "colour", "flag")
CLASSES = ("no", "yes")


def mixed_proba(frame: pd.DataFrame) -> np.ndarray:
    p = 1 / (1 + np.exp(-(1.5 * frame["x"].to_numpy() - 0.5)))
    return np.column_stack([1 - p, p])


@pytest.fixture(scope="module")
def version() -> MonitoredVersion:
    train = make_mixed(3000, seed=1)
    schema = infer_schema(train, "label")
    kinds = {"x": "numeric", "count": "numeric", "colour": "categorical",
             "flag": "categorical", "label": "categorical"}
    proba = mixed_proba(train)
    extra = {n: (pd.Series(v), "categorical" if n == "prediction.label" else "numeric",
                 "prediction") for n, v in prediction_columns("binary", CLASSES,
                                                             proba=proba).items()}
    reference = build_reference(train, kinds, roles={"label": "target"}, extra=extra,
                                sample_columns=list(MIXED_FEATURES))
    y = (train["label"] == "yes").to_numpy(dtype=int)
    return MonitoredVersion(model="m", version="1", task="binary", target="label",
                            features=MIXED_FEATURES, classes=CLASSES, schema=schema,
                            reference=reference, calibrator=fit_calibrator(y, proba, CLASSES),
                            holdout={"roc_auc": 0.80, "accuracy": 0.72})


def mixed_window(frame: pd.DataFrame, labels: bool = True) -> Window:
    data = frame if labels else frame.drop(columns=["label"])
    return window_from_frame(data, features=MIXED_FEATURES, target="label", task="binary",
                             classes=CLASSES, source="test", proba=mixed_proba(frame))
