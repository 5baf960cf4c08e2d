"""What a rollout checks before and while it runs: that monitoring covers the version, the
A/B test's sample-size plan, and the blue-green warm-up of a new version."""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from flywheel.core.errors import FlywheelError, RolloutError
from flywheel.pipelines._monitoring_reference import REFERENCE_ARTIFACT
from flywheel.pipelines._predlog import log_location
from flywheel.predlog import INPUT_PREFIX
from flywheel.rollout import BINARY_METRICS, HealthCheck, outcome_values, plan_sample_size
from flywheel.serving import ModelStore, read_predictions

if TYPE_CHECKING:
    from flywheel.pipelines._context import ProjectContext
    from flywheel.registry import ModelVersionInfo
    from flywheel.registry.base import Registry

__all__ = ["PROFILE_ARTIFACT", "ab_plan", "check_monitoring", "warm_up"]

PROFILE_ARTIFACT = "profile.json"
_PLAN_WINDOW = dt.timedelta(days=7)
_MIN_BASELINE_ROWS = 30


def check_monitoring(project: ProjectContext, registry: Registry, info: ModelVersionInfo
                     ) -> None:
    """Refuse a version that monitoring does not cover.

    Monitoring needs the spec's ``monitoring.enabled`` and the version's reference, the
    baseline drift is measured from: ``monitoring/reference.json`` in its training run, or
    for versions trained before that existed, the coarser data profile ``profile.json``.

    Raises:
        RolloutError: If either is missing.
    """
    if not project.spec.monitoring.enabled:
        raise RolloutError(
            "monitoring is not configured for this model (monitoring.enabled is false in "
            "flywheel.yaml), and a rollout is judged on live monitoring; set "
            "monitoring.enabled: true and start the rollout again.")
    if not info.run_id or not any(registry.artifact_exists(info.run_id, name)
                                  for name in (REFERENCE_ARTIFACT, PROFILE_ARTIFACT)):
        raise RolloutError(
            f"monitoring is not configured for version {info.version}: its training run has "
            f"no monitoring reference ({REFERENCE_ARTIFACT} or {PROFILE_ARTIFACT}), so its "
            "drift cannot be measured. Versions trained by `flywheel train` have one; train "
            "it again.")


def ab_plan(project: ProjectContext, policy: Any, champion: ModelVersionInfo,
            frame: pd.DataFrame | None = None) -> dict[str, Any] | None:
    """The A/B test's sample size for ``policy.mde``, from the best baseline available.

    The baseline (and, for a non-binary metric, its spread) comes from ``policy.baseline``,
    else the champion's labelled requests in the last week of the prediction log, else its
    holdout metrics; a binary metric falls back to 0.5, its worst case. Returns None when a
    non-binary metric has no spread to size from yet (the controller tries again later).
    """
    binary = policy.metric in BINARY_METRICS
    values = _champion_outcomes(project, policy, champion.version, frame)
    baseline, sd, source = policy.baseline, None, "the policy"
    if values.size >= _MIN_BASELINE_ROWS:
        observed, sd, source = float(values.mean()), float(values.std()), \
            f"{values.size} labelled champion requests"
        baseline = observed if baseline is None else baseline
    if baseline is None:
        baseline, sd, source = _holdout_baseline(policy.metric, champion.tags)
    if baseline is None and binary:
        baseline, source = 0.5, "the worst case (no baseline known)"
    if baseline is None or (not binary and not sd):
        return None
    try:
        plan = plan_sample_size(baseline, policy.mde, alpha=policy.alpha, power=policy.power,
                                proportion=binary, sd=sd)
    except ValueError:
        return None
    return {**plan.to_dict(), "metric": policy.metric, "baseline_from": source}


def _champion_outcomes(project: ProjectContext, policy: Any, version: str,
                       frame: pd.DataFrame | None) -> np.ndarray:
    if frame is None:
        since = dt.datetime.now(dt.UTC) - _PLAN_WINDOW
        frame = read_predictions(log_location(project), since=since)
    if frame.empty or "label" not in frame:
        return np.empty(0)
    rows = frame[(frame["model_version"] == version)]
    if "error" in rows:
        rows = rows[rows["error"].isna()]
    if "arm" in rows:
        rows = rows[rows["arm"] != "shadow"]
    return outcome_values(rows, policy.metric, positive=policy.positive)


def _holdout_baseline(metric: str, tags: Any) -> tuple[float | None, float | None, str]:
    def tag(name: str) -> float | None:
        try:
            value = float(tags[f"flywheel.holdout_{name}"])
        except (KeyError, ValueError):
            return None
        return value if math.isfinite(value) else None

    if metric == "accuracy" and (acc := tag("accuracy")) is not None:
        return acc, None, "the champion's holdout accuracy"
    if metric == "abs_error":
        mae, rmse = tag("mae"), tag("rmse")
        if mae is not None and rmse is not None:
            return mae, math.sqrt(max(rmse * rmse - mae * mae, 1e-12)), \
                "the champion's holdout MAE and RMSE"
    return None, None, ""


def warm_up(project: ProjectContext, registry: Registry, version: str, *, rows: int,
            budget_ms: float | None) -> HealthCheck:
    """Load ``version`` as a server would (checksum verified, compiled) and score ``rows``
    recent inputs one at a time: every answer must be finite and, with a budget, the p99
    must be within it."""
    problems: list[str] = []
    try:
        served = ModelStore(registry, allow_pickle=project.spec.training.allow_pickle
                            ).load(version)
    except FlywheelError as exc:
        return HealthCheck(False, 0, math.nan, (f"version {version} does not load: {exc}",))
    records = sample_records(project, served.model.features, rows)
    if not records:
        return HealthCheck(False, 0, math.nan, ("no input rows to warm up with",))
    latencies = []
    for record in records:
        started = time.perf_counter()
        try:
            predictions, probabilities = served.answer([record])
        except Exception as exc:  # noqa: BLE001 - any failure fails the health check
            problems.append(f"scoring failed: {type(exc).__name__}: {exc}")
            break
        latencies.append((time.perf_counter() - started) * 1000.0)
        numbers = probabilities if probabilities is not None else predictions
        if not np.all(np.isfinite(np.asarray(numbers, dtype=float))):
            problems.append(f"a non-finite answer for {record}")
            break
    p99 = float(np.percentile(latencies, 99)) if latencies else math.nan
    if budget_ms is not None and math.isfinite(p99) and p99 > budget_ms:
        problems.append(f"p99 latency {p99:.2f} ms over the budget of {budget_ms:g} ms")
    return HealthCheck(not problems, len(latencies), p99, tuple(problems))


def sample_records(project: ProjectContext, features: list[str], rows: int) -> list[dict[str, Any]]:
    """Recent inputs from the prediction log, else the first rows of the training data."""
    frame = read_predictions(log_location(project), last=rows, with_labels=False)
    columns = [INPUT_PREFIX + f for f in features]
    if len(frame) and all(c in frame for c in columns):
        table = frame[columns].rename(columns=lambda c: c.removeprefix(INPUT_PREFIX))
    else:
        try:
            table = project.load_data()[features].head(rows)
        except (FlywheelError, KeyError):
            return []
    table = table.astype(object).where(table.notna(), None)
    return [dict(zip(features, values, strict=True)) for values in
            table[features].itertuples(index=False, name=None)]
