"""The monitoring flow: fetch the version's reference, read the window (prediction log or a
data file), monitor it, send alerts, log the metrics to MLflow, write the HTML report.

``monitor_project`` runs once; ``watch_project`` runs on an interval and survives any bad
window (the error is reported through ``on_error`` and the next window is tried). Both keep what
they fetched from the registry per version, so a watcher reloads only when the alias moves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel.core.errors import FlywheelError, MonitoringError, RegistryError
from flywheel.core.timeparse import parse_iso_time
from flywheel.core.workspace import atomic_write_text
from flywheel.monitoring import (
    AlertDispatcher,
    MonitorResult,
    check_rule_names,
    monitor_window,
    render_report,
)
from flywheel.pipelines._monitor_inputs import (
    MonitorCache,
    WindowRequest,
    load_version,
    read_window,
)

if TYPE_CHECKING:
    from flywheel.pipelines._context import ProjectContext

__all__ = ["MonitorCache", "WindowRequest", "monitor_project", "parse_time", "watch_project"]

log = logging.getLogger("flywheel.monitoring")

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """An ISO time (``2024-07-01``, ``2024-07-01T12:00Z``; UTC when no zone is given) or a
    duration back from now (``30m``, ``6h``, ``7d``).

    Raises:
        MonitoringError: If the text is neither.
    """
    now = now or dt.datetime.now(dt.UTC)
    found = _RELATIVE.match(text)
    if found:
        return now - dt.timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])
    try:
        return parse_iso_time(text)
    except ValueError:
        raise MonitoringError(f"cannot read {text!r} as a time; give an ISO time such as "
                              "2024-07-01T12:00 (UTC unless a zone is given) or a duration "
                              "back from now such as 30m, 6h, 7d.") from None


def monitor_project(project: ProjectContext, window: WindowRequest | None = None, *,
                    version: str | None = None, report: str | Path | None | bool = None,
                    log_to_mlflow: bool = True, send_alerts: bool = True,
                    cache: MonitorCache | None = None) -> MonitorResult:
    """Monitor one window against the serving version (``monitoring.version``, default the
    champion) and act on it.

    Args:
        report: Where to write the HTML report; None: ``monitoring.report``; False: none.
        send_alerts: Send fired alerts to the sinks (with the cool-down).

    Raises:
        ConfigError: For an alert rule on an unknown metric or a broken sink.
        MonitoringError: For bad window bounds, or a version with nothing to compare with.
        ModelNotFoundError: If the version or alias does not exist.
        DataError: If ``window.data`` cannot be read.
    """
    window = window or WindowRequest()
    owned = cache is None  # a one-shot run: let background sinks (webhooks) finish at the end
    cache = cache if cache is not None else MonitorCache()
    try:
        return _monitor(project, window, version, report, log_to_mlflow, send_alerts, cache)
    finally:
        if owned and cache.dispatcher is not None:
            cache.dispatcher.close()


def _monitor(project: ProjectContext, window: WindowRequest, version: str | None,
             report: str | Path | None | bool, log_to_mlflow: bool, send_alerts: bool,
             cache: MonitorCache) -> MonitorResult:
    spec = project.spec.monitoring
    check_rule_names(spec.alerts.rules)
    if window.since and window.until and window.since >= window.until:
        raise MonitoringError(f"the window is empty by construction: since ({window.since}) "
                              f"is not before until ({window.until}).")
    registry = cache.registry = cache.registry or project.registry()
    info = registry.version_info(version or spec.version)
    monitored = cache.versions.get(info.version)
    if monitored is None:
        monitored = cache.versions[info.version] = load_version(project, registry, info)
    current = read_window(project, registry, info, monitored, window, cache)
    result = monitor_window(current, monitored, spec, validation=project.spec.validation)
    extra: list[str] = []
    if send_alerts:
        if cache.dispatcher is None:
            cache.dispatcher = AlertDispatcher.from_spec(
                spec.alerts, project.spec.root,
                state_path=project.workspace.root / "monitoring" / "alert_state.json")
        labels = {"model": monitored.model, "version": monitored.version}
        cache.dispatcher.observe(result.metrics, result.rules, labels)
        sent, _ = cache.dispatcher.dispatch(result.alerts)
        result = dataclasses.replace(result, sent=tuple(sent))
    history_path = project.workspace.root / "monitoring" / "history.jsonl"
    history = _history(history_path, monitored.model, monitored.version)
    if log_to_mlflow:
        try:
            run_id = registry.monitoring_run(info)
            registry.log_window_metrics(run_id, result.metrics, step=len(history))
            result = dataclasses.replace(result, mlflow_run_id=run_id)
        except RegistryError as exc:
            extra.append(f"metrics not logged to MLflow: {exc}")
    _append_history(history_path, result)
    # The dashboard's drift per column: the last run as `flywheel monitor --json` prints it.
    atomic_write_text(history_path.with_name("last.json"), result.to_json())
    if extra:
        result = dataclasses.replace(result, notes=(*result.notes, *extra))
    if report is not False:
        path = project.spec.resolve(report if isinstance(report, str | Path) else spec.report)
        result = dataclasses.replace(result, report_path=str(path))
        atomic_write_text(path, render_report(result, history))
    return result


def watch_project(project: ProjectContext, window: WindowRequest | None = None, *, interval: float,
                  iterations: int | None = None, version: str | None = None,
                  report: str | Path | None | bool = None,
                  on_result: Callable[[MonitorResult], None] | None = None,
                  on_error: Callable[[Exception], None] | None = None,
                  sleep: Callable[[float], None] = time.sleep) -> int:
    """Monitor a window every ``interval`` seconds, ``iterations`` times (None: until
    interrupted). A failing window goes to ``on_error`` and the loop goes on. Returns how many
    windows raised an alert."""
    cache = MonitorCache()
    alerted = done = 0
    try:
        while iterations is None or done < iterations:
            if done:
                sleep(interval)
            done += 1
            try:
                result = monitor_project(project, window, version=version, report=report,
                                         cache=cache)
            except Exception as exc:  # noqa: BLE001 - a bad window must not stop the watcher
                if not isinstance(exc, FlywheelError):
                    log.exception("monitoring a window failed")
                if on_error is not None:
                    on_error(exc)
                continue
            alerted += result.alerted
            if on_result is not None:
                on_result(result)
    finally:
        if cache.dispatcher is not None:
            cache.dispatcher.close()
    return alerted


def _history(path: Path, model: str, version: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("model") == model and entry.get("version") == version:
                out.append(entry)
    return out


def _append_history(path: Path, result: MonitorResult) -> None:
    entry = {"created": result.created, "model": result.model, "version": result.version,
             "window": result.window.description, "alerts": len(result.alerts),
             "metrics": {k: v for k, v in result.metrics.items() if v == v}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
