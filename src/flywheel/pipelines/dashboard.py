"""What the dashboard shows, as one JSON document made of the CLI's ``--json`` outputs.

``flywheel serve`` answers it at ``/dashboard.json`` and ``flywheel dashboard`` (no server)
at the same path; the page ``/dashboard`` fetches it again every few seconds. Each part is the
same JSON its command prints: ``models`` is ``flywheel models --json``, ``rollout`` is
``flywheel rollout status --json``, ``monitoring`` is the last ``flywheel monitor --json``
(kept in ``.flywheel/monitoring/last.json``), ``history`` is ``flywheel history --json``'s
entries; ``traffic`` is computed from the prediction log, one bucket a minute.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel.core.errors import FlywheelError
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines._predlog import LogWindows
from flywheel.pipelines.promote import RECOVERED_TAG, history, recover
from flywheel.pipelines.rollout import rollout_status

if TYPE_CHECKING:
    from flywheel.registry.base import Registry

__all__ = ["dashboard_data", "version_rows"]

TRAFFIC_MINUTES = 60
"""How far back the latency and error-rate series reach."""


def version_rows(project: ProjectContext, registry: Registry) -> list[dict[str, Any]]:
    """The registered versions, newest first, as ``flywheel models --json`` prints them."""
    metric = project.spec.training.metric
    rows: list[dict[str, Any]] = []
    for v in registry.versions():
        tags = v.tags
        metric = tags.get("flywheel.metric", metric or "")
        rows.append({
            "version": v.version, "aliases": list(v.aliases),
            "created": v.created.isoformat(timespec="seconds"),
            "learner": tags.get("flywheel.learner", ""), "metric": metric,
            "cv": tags.get(f"flywheel.cv_{metric}", ""),
            "holdout": tags.get(f"flywheel.holdout_{metric}", ""),
            "data": tags.get("flywheel.data_fingerprint", ""),
            "compiled": tags.get("flywheel.compiled.verified") == "true",
            "run_id": v.run_id,
            **({"recovered": tags[RECOVERED_TAG]} if RECOVERED_TAG in tags else {}),
        })
    return rows


def dashboard_data(project: ProjectContext, *, registry: Registry | None = None,
                   served: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, read-only (a part that cannot be read says why in
    ``problems`` instead of failing the whole document).

    Args:
        served: What this server has loaded (alias to version); None without a server.
    """
    registry = registry or project.registry()
    recover(project, registry)
    problems: list[str] = []
    data: dict[str, Any] = {"model": registry.model_name, "generated": time.time(),
                            "served": served, "mlflow": _mlflow_links(project)}
    parts: dict[str, Callable[[], Any]] = {"models": lambda: version_rows(project, registry),
             "rollout": lambda: rollout_status(project, registry=registry).to_dict(),
             "monitoring": lambda: _last_monitoring(project),
             "loop": lambda: _loop(project),
             "traffic": lambda: _traffic(project)}
    for name, read in parts.items():
        try:
            data[name] = read()
        except (FlywheelError, OSError, ValueError) as exc:
            data[name] = None
            problems.append(f"{name}: {exc}")
    data["problems"] = problems
    # The same encoding the CLI's --json uses (datetimes as text).
    parsed: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return parsed


def _mlflow_links(project: ProjectContext) -> dict[str, str | None]:
    """The MLflow UI address runs link to: the tracking server when it is one, else none
    (a local SQLite store has no UI until ``mlflow ui`` runs on it)."""
    uri = project.spec.tracking.tracking_uri or ""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else None
    return {"ui": base, "run": None if base is None else base + "/#/runs/{run_id}"}


def _last_monitoring(project: ProjectContext) -> Any:
    path = Path(project.workspace.root) / "monitoring" / "last.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _loop(project: ProjectContext) -> dict[str, Any]:
    """The loop's stored state (its last trigger) and the last decisions of the audit log."""
    state_path = Path(project.workspace.root) / "loop" / "state.json"
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else None
    audit = history(project)
    decisions = [e.to_dict() for e in audit.entries if e.kind == "change"][-12:]
    return {"state": state, "decisions": decisions[::-1]}


def _traffic(project: ProjectContext) -> list[dict[str, Any]]:
    """Requests, errors, error rate and latency p50/p99 (ms) per minute over the last hour."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=TRAFFIC_MINUTES)
    frame = LogWindows(project).read(since=since, with_labels=False,
                                     columns=("ts", "latency_ms", "error"))
    if frame.empty:
        return []
    minute = frame["ts"].dt.floor("min")
    out = []
    for when, rows in frame.groupby(minute, sort=True):
        latency = rows["latency_ms"].astype(float)
        errors = int(rows["error"].notna().sum())
        out.append({"minute": when.isoformat(), "requests": len(rows), "errors": errors,
                    "error_rate": errors / len(rows),
                    "p50_ms": round(float(latency.quantile(0.5)), 3),
                    "p99_ms": round(float(latency.quantile(0.99)), 3)})
    return out
