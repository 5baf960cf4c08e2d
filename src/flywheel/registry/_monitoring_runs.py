"""The monitoring run of a model version: where `flywheel monitor` logs each window's metrics.

One run per version, created on first use as a child of the run that trained the version (so
the MLflow UI shows it under that run) and named ``monitor-v<N>``; the version gets tag
``flywheel.monitoring_run`` pointing at it. Each window logs its metrics at the next step, so
MLflow charts them over time. Functions over an :class:`MlflowRegistry`, using its client and
error handling, like ``_records``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mlflow.entities import Metric
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from flywheel.registry._records import set_version_tags

if TYPE_CHECKING:
    from flywheel.registry._mlflow import MlflowRegistry
    from flywheel.registry._types import ModelVersionInfo

__all__ = ["MONITORING_RUN_TAG", "log_window_metrics", "monitoring_run"]

MONITORING_RUN_TAG = "flywheel.monitoring_run"
_BATCH = 1000


def monitoring_run(registry: MlflowRegistry, version: ModelVersionInfo) -> str:
    """The id of ``version``'s monitoring run, created (and tagged on the version) if needed."""
    known = version.tags.get(MONITORING_RUN_TAG)
    if known:
        return known
    experiment = registry._get_experiment_id()
    tags = {"flywheel.monitoring": "true", "flywheel.model": registry.model_name,
            "flywheel.model_version": version.version}
    if version.run_id:
        tags[MLFLOW_PARENT_RUN_ID] = version.run_id
    run = registry._call("start the monitoring run", lambda: registry._client.create_run(
        experiment, run_name=f"monitor-v{version.version}", tags=tags))
    run_id = str(run.info.run_id)
    registry._call("end the monitoring run", lambda: registry._client.set_terminated(
        run_id, status="FINISHED"))
    set_version_tags(registry, version.version, {MONITORING_RUN_TAG: run_id})
    return run_id


def log_window_metrics(registry: MlflowRegistry, run_id: str, metrics: Mapping[str, float],
                       *, step: int) -> None:
    """Log one window's metrics at ``step`` (finite values only)."""
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v == v
             and abs(float(v)) != float("inf")]
    for start in range(0, len(items), _BATCH):
        chunk = items[start:start + _BATCH]
        registry._call("log monitoring metrics", functools.partial(
            registry._client.log_batch, run_id, metrics=chunk))
