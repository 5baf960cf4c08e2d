"""Evidence for a decision, computed from the prediction log since the rollout started.

The log has one row per scored record: the arm that answered (``champion``, ``challenger``,
``shadow`` or a bandit arm ``v<N>``), the version, the latency, the prediction, a failed call's
error, and the label joined from ``/feedback``. This module turns those rows into per-arm
numbers (a pure function of a DataFrame), which ``_decide`` judges.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd

from flywheel.rollout._outcomes import outcome_values, same_label
from flywheel.rollout._sequential import ArmSample
from flywheel.rollout._state import CHAMPION_ARM, SHADOW_ARM, RolloutState

__all__ = ["ArmEvidence", "Evidence", "ShadowEvidence", "gather_evidence"]

_BINS = 10


@dataclasses.dataclass(frozen=True)
class ArmEvidence:
    """What one arm did since the rollout started.

    Attributes:
        requests: Rows the arm was asked to score (answered or failed).
        errors: Rows whose call failed or timed out.
        outcome: The metric's per-request values on labelled, answered rows.
        histogram: Prediction counts per bin (classes, probability or value bins).
        stage_requests, stage_labels: The same counts since the current stage began.
    """

    arm: str
    version: str
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    labels: int
    outcome: ArmSample
    histogram: dict[str, int]
    stage_requests: int
    stage_labels: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "requests": self.requests, "errors": self.errors,
                "error_rate": round(self.error_rate, 6), "p50_ms": _round(self.p50_ms),
                "p99_ms": _round(self.p99_ms), "labels": self.labels,
                "metric": _round(self.outcome.mean), "stage_requests": self.stage_requests,
                "stage_labels": self.stage_labels}


@dataclasses.dataclass(frozen=True)
class ShadowEvidence:
    """The challenger's shadow answers paired with the champion's on the same requests.

    Attributes:
        agreement: Share of paired requests with the same answer (regression: within 10 %).
        mean_abs_delta: Mean absolute difference of the first class's probability (classifiers)
            or of the value (regression).
        champion, challenger: Each one's metric on the labelled paired requests.
    """

    pairs: int
    agreement: float
    mean_abs_delta: float
    champion: ArmSample
    challenger: ArmSample

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "agreement": _round(self.agreement),
                "mean_abs_delta": _round(self.mean_abs_delta),
                "labelled_pairs": self.challenger.n,
                "champion_metric": _round(self.champion.mean),
                "challenger_metric": _round(self.challenger.mean)}


@dataclasses.dataclass(frozen=True)
class Evidence:
    """Everything a decision looks at."""

    arms: dict[str, ArmEvidence]
    shadow: ShadowEvidence | None
    until: dt.datetime

    def arm(self, name: str) -> ArmEvidence:
        return self.arms[name]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: a.to_dict() for name, a in self.arms.items()}
        if self.shadow is not None:
            out["shadow_pairs"] = self.shadow.to_dict()
        return out


def gather_evidence(frame: pd.DataFrame, state: RolloutState, *,
                    now: dt.datetime | None = None) -> Evidence:
    """Per-arm evidence from prediction-log rows (``read_predictions``) for ``state``.

    Rows from before the rollout started, after it ended, from arms it does not know, or
    answered by another version than the arm's (after a promotion the ``champion`` arm is the
    new version) are ignored; a log written before arms were recorded is attributed by
    version.
    """
    now = now or dt.datetime.now(dt.UTC)
    arms = state.arm_versions()
    frame = _normalize(frame, state)
    metric = getattr(state.policy, "metric", None)
    edges = _value_edges(frame[frame["arm"] == CHAMPION_ARM]) if "value" in frame else None
    found: dict[str, ArmEvidence] = {}
    for name, version in arms.items():
        rows = frame[frame["arm"] == name]
        found[name] = _arm(name, version, rows, state, metric, edges)
    shadow = _shadow(frame, state, metric) if state.policy.kind == "shadow" else None
    return Evidence(arms=found, shadow=shadow, until=now)


def _normalize(frame: pd.DataFrame, state: RolloutState) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in
                             ("request_id", "ts", "model_version", "latency_ms", "prediction",
                              "value", "probabilities", "label", "arm", "error")})
    ts = pd.to_datetime(frame["ts"], utc=True)
    keep = ts >= pd.Timestamp(state.started)
    if not state.running:  # its last write ended it; what the champion answered later is not
        keep &= ts <= pd.Timestamp(state.updated)
    frame = frame[keep]
    if "error" not in frame:
        frame = frame.assign(error=None)
    arms = state.arm_versions()
    if "arm" not in frame:  # a log from before arms were recorded: attribute by version
        by_version = {v: a for a, v in arms.items() if a != SHADOW_ARM}
        frame = frame.assign(arm=frame["model_version"].map(by_version))
    expected = frame["arm"].map(arms)
    return frame[expected.notna() & (frame["model_version"].astype(str) == expected)]


def _arm(name: str, version: str, rows: pd.DataFrame, state: RolloutState,
         metric: str | None, edges: np.ndarray | None) -> ArmEvidence:
    failed = rows["error"].notna()
    answered = rows[~failed]
    latency = pd.to_numeric(rows["latency_ms"], errors="coerce").dropna().to_numpy()
    p50, p99 = (float(np.percentile(latency, 50)), float(np.percentile(latency, 99))) \
        if latency.size else (math.nan, math.nan)
    positive = state.policy.positive
    values = outcome_values(answered, metric, positive=positive) if metric else np.empty(0)
    in_stage = pd.to_datetime(rows["ts"], utc=True) >= pd.Timestamp(state.stage_started)
    labelled = answered["label"].notna() if "label" in answered else pd.Series(dtype=bool)
    stage_labels = int((labelled & in_stage[~failed]).sum()) if len(labelled) else 0
    return ArmEvidence(arm=name, version=version, requests=len(rows), errors=int(failed.sum()),
                       p50_ms=p50, p99_ms=p99, labels=int(labelled.sum()),
                       outcome=ArmSample.of(values), histogram=_histogram(answered, edges),
                       stage_requests=int(in_stage.sum()), stage_labels=stage_labels)


def _histogram(rows: pd.DataFrame, edges: np.ndarray | None) -> dict[str, int]:
    if rows.empty:
        return {}
    probabilities = rows["probabilities"].dropna()
    if len(probabilities) == len(rows) and len(probabilities.iloc[0]) == 2:
        first = np.fromiter((p[0] for p in probabilities), dtype=float, count=len(rows))
        bins = np.clip((first * _BINS).astype(int), 0, _BINS - 1)
        counts = np.bincount(bins, minlength=_BINS)
        return {f"p{i / _BINS:.1f}": int(c) for i, c in enumerate(counts)}
    values = pd.to_numeric(rows["value"], errors="coerce").dropna().to_numpy() \
        if "value" in rows else np.empty(0)
    if values.size and edges is not None and edges.size:
        counts = np.bincount(np.searchsorted(edges, values), minlength=edges.size + 1)
        return {f"bin{i}": int(c) for i, c in enumerate(counts)}
    return {str(k): int(v) for k, v in rows["prediction"].astype(str).value_counts().items()}


def _value_edges(champion: pd.DataFrame) -> np.ndarray | None:
    values = pd.to_numeric(champion["value"], errors="coerce").dropna().to_numpy()
    if values.size < 20:
        return None
    return np.unique(np.quantile(values, np.linspace(0.1, 0.9, _BINS - 1)))


def _shadow(frame: pd.DataFrame, state: RolloutState, metric: str | None
            ) -> ShadowEvidence:
    shadow = frame[(frame["arm"] == SHADOW_ARM) & frame["error"].isna()]
    champion = frame[frame["arm"] == CHAMPION_ARM]
    pairs = champion.merge(shadow, on="request_id", suffixes=("", "_shadow"))
    if pairs.empty:
        return ShadowEvidence(0, math.nan, math.nan, ArmSample.of(np.empty(0)),
                              ArmSample.of(np.empty(0)))
    probabilities = pairs["probabilities"].dropna()
    if len(probabilities) == len(pairs):
        agree = same_label(pairs["prediction"].astype(str), pairs["prediction_shadow"]
                           .astype(str))
        a = np.fromiter((p[0] for p in pairs["probabilities"]), dtype=float, count=len(pairs))
        b = np.fromiter((p[0] for p in pairs["probabilities_shadow"]), dtype=float,
                        count=len(pairs))
    else:
        a = pd.to_numeric(pairs["value"], errors="coerce").to_numpy(dtype=float)
        b = pd.to_numeric(pairs["value_shadow"], errors="coerce").to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            agree = np.abs(b - a) <= 0.1 * np.maximum(np.abs(a), 1e-9)
    labelled = pairs[pairs["label"].notna()] if "label" in pairs else pairs.iloc[:0]
    positive = state.policy.positive
    mine = labelled.rename(columns={"prediction_shadow": "_p", "value_shadow": "_v"})
    theirs = labelled.assign(prediction=labelled["prediction_shadow"],
                             value=labelled["value_shadow"])
    champion_values = outcome_values(mine, metric, positive=positive) if metric else np.empty(0)
    shadow_values = outcome_values(theirs, metric, positive=positive) if metric else np.empty(0)
    return ShadowEvidence(pairs=len(pairs), agreement=float(np.mean(agree)),
                          mean_abs_delta=float(np.nanmean(np.abs(b - a))),
                          champion=ArmSample.of(champion_values),
                          challenger=ArmSample.of(shadow_values))


def _round(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)
