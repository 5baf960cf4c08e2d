"""Synthetic prediction-log rows, shaped like ``read_predictions`` returns them."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd

from flywheel.core._rollout_spec import RolloutSpec
from flywheel.core.spec import Task
from flywheel.rollout import RolloutState, new_state, policy_from_spec

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
_ids = itertools.count()


def state(kind: str = "canary", *, champion: str = "1", challenger: str = "2",
          task: Task = "binary", **overrides: object) -> RolloutState:
    policy = policy_from_spec(kind, RolloutSpec(), task=task, positive="yes",
                              overrides=dict(overrides))
    return new_state(model="m", policy=policy, champion=champion, challenger=challenger,
                     started_by="test", reason="", now=T0)


def rows(arm: str, version: str, n: int, *, accuracy: float = 0.9, errors: int = 0,
         latency_ms: float = 1.0, p_yes: float = 0.3, labelled: float = 1.0, seed: int = 0,
         at: dt.datetime | None = None, ids: list[str] | None = None) -> pd.DataFrame:
    """``n`` rows answered by ``arm``: predictions right with probability ``accuracy``, the
    first ``errors`` of them failed calls, a share ``labelled`` with feedback."""
    rng = np.random.default_rng(seed)
    truth = np.where(rng.random(n) < 0.3, "yes", "no")
    right = rng.random(n) < accuracy
    prediction = np.where(right, truth, np.where(truth == "yes", "no", "yes"))
    proba_yes = np.clip(rng.normal(p_yes, 0.1, n), 0.0, 1.0)
    when = at or T0 + dt.timedelta(seconds=1)
    frame = pd.DataFrame({
        "request_id": ids if ids is not None else [f"r{next(_ids)}" for _ in range(n)],
        "ts": pd.Timestamp(when) + pd.to_timedelta(np.arange(n), unit="ms"),
        "model_version": version,
        "latency_ms": rng.gamma(4.0, latency_ms / 4.0, n).astype("float32"),
        "prediction": prediction,
        "value": np.nan,
        "probabilities": [np.array([1 - p, p], dtype="float32") for p in proba_yes],
        "label": np.where(rng.random(n) < labelled, truth, None),
        "arm": arm,
        "error": None,
    })
    if errors:
        frame.loc[: errors - 1, "error"] = "RuntimeError: boom"
        frame.loc[: errors - 1, "prediction"] = None
        frame.loc[: errors - 1, "probabilities"] = None
    return frame


def log(*parts: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True)
