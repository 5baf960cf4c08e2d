"""The delivery report: what the deployed models did for the team, from the prediction log,
the feedback, the registry and the audit log.

The deployed metric is measured on labelled production traffic, period by period (months of
event time when the log spans months). The baseline is a version that was never retrained
(the first one, by default), scored offline on the same labelled rows, so the two numbers
answer one question: what did retraining buy? Their difference carries a paired confidence
interval over those same rows (DeLong's for binary ROC AUC, a paired bootstrap otherwise), and
the summary claims a gain or a loss only when the interval excludes zero.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from flywheel.core.errors import FlywheelError
from flywheel.evaluation import compare_paired, get_metric, predict_scores
from flywheel.monitoring import encode_labels
from flywheel.pipelines._predlog import REPORT_DAYS, LogWindows
from flywheel.pipelines._retrain_data import as_training_types
from flywheel.pipelines.promote import history as audit_history
from flywheel.predlog import INPUT_PREFIX

if TYPE_CHECKING:
    from flywheel.pipelines._context import ProjectContext
    from flywheel.registry import AuditEntry

__all__ = ["DeliveryReport", "PeriodRow", "build_report", "champion_changes",
           "gather_decisions", "origin_of"]

_EVENTS = ("loop_trigger", "loop_retrained", "loop_gates_failed", "loop_retrain_failed")
_ALIASES = ("champion", "challenger")
CHAMPION = "champion"
_MIN_PERIOD_LABELS = 200
_SCORE_CHUNK = 50_000


@dataclasses.dataclass(frozen=True)
class PeriodRow:
    period: str
    rows: int
    labelled: int
    deployed: float | None
    baseline: float | None
    versions: str
    p50_ms: float | None
    p99_ms: float | None


@dataclasses.dataclass(frozen=True)
class DeliveryReport:
    """Everything the report shows; ``to_dict`` is its JSON form."""

    model: str
    metric: str
    higher_is_better: bool
    champion: str | None
    baseline_version: str | None
    periods: tuple[PeriodRow, ...]
    deployed: float | None
    baseline: float | None
    predictions: int
    requests: int
    answered: int
    failed: int
    client_failed: int | None
    p50_ms: float | None
    p99_ms: float | None
    throughput_rps: float | None
    events: tuple[dict[str, Any], ...]
    decisions: tuple[dict[str, Any], ...]
    notes: tuple[str, ...]
    comparison: dict[str, Any] | None = None
    """Deployed against baseline on the same labelled rows (``gain``, positive when the
    deployed models did better, its ``low`` and ``high`` bounds at ``confidence``, ``rows``,
    ``method``, ``p_value``); None when it could not be computed."""

    @property
    def success_rate(self) -> float | None:
        total = self.answered + self.failed + (self.client_failed or 0)
        return None if total == 0 else self.answered / total

    def summary(self) -> str:
        """One paragraph: the deployment, its speed and reliability, what happened."""
        parts = []
        head = f"Deployed model version {self.champion}"
        recent = [p for p in self.periods if p.deployed is not None
                  and p.labelled >= _MIN_PERIOD_LABELS]
        if recent:
            head += f" at {self.metric} {recent[-1].deployed:.3f} ({recent[-1].period})"
        if self.p99_ms is not None:
            head += f" with {self.p99_ms:.2f} ms p99"
        parts.append(head)
        if self.predictions:
            rate = self.success_rate
            parts.append(f"{_count(self.predictions)} predictions" +
                         (f" at {rate:.2%} success" if rate is not None else ""))
        triggers = [e for e in self.events if e["action"] == "loop_trigger"]
        if triggers:
            months = sorted({e["clock"][:7] for e in triggers if e.get("clock")})
            drift = [e for e in triggers if "drift" in e["reason"]]
            parts.append(f"{len(triggers)} retraining trigger(s)"
                         + (f", {len(drift)} of them drift" if drift else "")
                         + (f" ({', '.join(months)})" if months else ""))
        changes = champion_changes(self.decisions)
        if changes:
            parts.append(changes)
        done = [d for d in self.decisions if d["action"] == "loop_rollout_done"]
        if done:
            promoted = sum(1 for d in done if d.get("promoted"))
            parts.append(f"{promoted} retrained version(s) promoted after their rollout, "
                         f"{len(done) - promoted} not")
        text = "; ".join(parts) + "."
        if self.deployed is not None and self.baseline is not None:
            text += " " + self.verdict()
        return text

    def verdict(self) -> str:
        """Deployed against baseline; a gain or a loss is claimed only when the paired
        interval excludes zero, otherwise it is "no measurable gain"."""
        if self.deployed is None or self.baseline is None:
            return ""
        measured = (f"Over the whole period the deployed models measured {self.metric} "
                    f"{self.deployed:.4f}")
        base = f"{self.baseline:.4f} for version {self.baseline_version} never retrained"
        c = self.comparison
        if c is None:
            return (f"{measured} against {base}; no confidence interval could be computed, "
                    "so no gain is claimed.")
        interval = (f"difference {c['gain']:+.4f}, {c['confidence']:.0%} CI "
                    f"{c['low']:+.4f} to {c['high']:+.4f}, paired over {c['rows']:,} rows")
        if c["low"] > 0:
            return f"{measured}, better than {base} ({interval})."
        if c["high"] < 0:
            return f"{measured}, worse than {base} ({interval})."
        return f"{measured}: no measurable gain over {base} ({interval})."

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["success_rate"] = self.success_rate
        data["summary"] = self.summary()
        return data


def build_report(project: ProjectContext, *, baseline: str | None = None,
                 since: dt.datetime | None = None) -> DeliveryReport:
    """Gather the delivery report for ``project``.

    Args:
        baseline: The never-retrained version to compare with (default: version 1).
        since: The start of the traffic reported on (default: ``REPORT_DAYS`` days ago); the
            log is read from there, not whole.
    """
    registry = project.registry()
    spec = project.spec
    metric = get_metric(spec.target.task, spec.training.metric)
    champion = registry.alias_version("champion")
    notes: list[str] = []
    start = since or dt.datetime.now(dt.UTC) - dt.timedelta(days=REPORT_DAYS)
    frame = LogWindows(project).read(since=start)
    errors = frame["error"].notna() if not frame.empty else pd.Series(dtype=bool)
    answered = frame[~errors & (frame["arm"] != "shadow")] if not frame.empty else frame
    failed = int((errors & (frame["arm"] != "shadow")).sum()) if not frame.empty else 0
    client = _client_failures(project)
    history = audit_history(project).entries
    entries = _with_clock(history)
    events = tuple(_event(e, clock) for e, clock in entries if e.action in _EVENTS)
    decisions = gather_decisions(history)
    versions = registry.versions()
    baseline_version = baseline or (min(versions, key=lambda v: int(v.version)).version
                                    if versions else None)
    periods: tuple[PeriodRow, ...] = ()
    deployed = base = None
    comparison: dict[str, Any] | None = None
    if answered.empty:
        notes.append("the prediction log is empty: nothing was served yet")
    else:
        labelled = answered[answered["label"].notna()]
        serving = champion or baseline_version
        classes = tuple(json.loads(registry.version_info(serving).tags.get(
            "flywheel.classes", "[]") or "[]")) if serving else ()
        truth, known = _truth(labelled, spec.target.task, classes)
        labelled = labelled[known]
        served = _served_predictions(labelled, spec.target.task)
        offline = None
        if baseline_version is not None and len(labelled):
            try:
                offline = _score(project, baseline_version, labelled)
            except FlywheelError as exc:
                notes.append(f"baseline version {baseline_version} could not be scored: {exc}")
        period = _period_of(answered["event_ts"])
        periods = _periods(answered, labelled, truth, served, offline, period, metric)
        if len(labelled):
            deployed = _metric(metric, truth, served)
            base = _metric(metric, truth, offline) if offline is not None else None
            if offline is not None and base is not None and deployed is not None:
                comparison = _compare(spec.target.task, metric.name, truth, served, offline,
                                      notes)
        else:
            notes.append("no labels arrived (POST /feedback): the metric cannot be measured")
    requests = answered["request_id"].str.replace(r":\d+$", "", regex=True) \
        if not answered.empty else pd.Series(dtype=str)
    per_request = answered.assign(request=requests).drop_duplicates("request") \
        if not answered.empty else answered
    latency = per_request["latency_ms"].to_numpy(dtype=float) if len(per_request) else \
        np.array([])
    return DeliveryReport(
        model=registry.model_name, metric=metric.name,
        higher_is_better=metric.greater_is_better, champion=champion,
        baseline_version=baseline_version, periods=periods, deployed=deployed, baseline=base,
        predictions=len(answered), requests=len(per_request), answered=len(answered),
        failed=failed, client_failed=client,
        p50_ms=_pct(latency, 50), p99_ms=_pct(latency, 99),
        throughput_rps=_throughput(per_request), events=events, decisions=decisions,
        notes=tuple(notes), comparison=comparison)


# Gathering ---------------------------------------------------------------------------------

def _truth(labelled: pd.DataFrame, task: str, classes: tuple[str, ...]
           ) -> tuple[np.ndarray, np.ndarray]:
    if task == "regression":
        values = pd.to_numeric(labelled["label"], errors="coerce").to_numpy(dtype=float)
        return values[np.isfinite(values)], np.isfinite(values)
    codes, unknown = encode_labels(labelled["label"], classes)
    return codes[~unknown], ~unknown


def _served_predictions(labelled: pd.DataFrame, task: str) -> np.ndarray:
    if task == "regression":
        return labelled["value"].to_numpy(dtype=float)
    if not len(labelled):
        return np.empty((0, 2))
    return np.stack(list(labelled["probabilities"].to_numpy()))


def _score(project: ProjectContext, version: str, labelled: pd.DataFrame) -> np.ndarray:
    """The version's predictions for the logged inputs, as it would have served them."""
    model = project.registry().load_model(version, allow_pickle=project.spec.training.allow_pickle)
    features = project.schema.feature_columns
    original = project.load_data()
    rows = pd.DataFrame({n: labelled[INPUT_PREFIX + n].to_numpy() if INPUT_PREFIX + n in
                         labelled else None for n in features})
    rows = as_training_types(rows, original[features])
    parts = []
    for start in range(0, len(rows), _SCORE_CHUNK):
        parts.append(predict_scores(model, rows.iloc[start:start + _SCORE_CHUNK],
                                    project.spec.target.task))
    return np.concatenate(parts)


def _compare(task: Any, metric: str, truth: np.ndarray, served: np.ndarray,
             offline: np.ndarray, notes: list[str]) -> dict[str, Any] | None:
    """The deployed predictions against the baseline's on the same rows, paired."""
    try:
        c = compare_paired(task, metric, truth, served, offline)
    except (ValueError, FlywheelError) as exc:
        notes.append(f"no confidence interval for deployed against baseline: {exc}")
        return None
    return {"gain": c.gain, "low": c.low, "high": c.high, "confidence": c.confidence,
            "rows": c.rows, "method": c.method, "p_value": c.p_value}


def _period_of(times: pd.Series) -> str:
    span = times.max() - times.min()
    return "M" if span > pd.Timedelta(days=62) else "D" if span > pd.Timedelta(days=2) else "h"


def _periods(answered: pd.DataFrame, labelled: pd.DataFrame, truth: np.ndarray,
             served: np.ndarray, offline: np.ndarray | None, period: str,
             metric: Any) -> tuple[PeriodRow, ...]:
    fmt = {"M": "%Y-%m", "D": "%Y-%m-%d", "h": "%Y-%m-%d %H:00"}[period]
    keys_all = answered["event_ts"].dt.strftime(fmt)
    keys_labelled = labelled["event_ts"].dt.strftime(fmt).to_numpy()
    rows = []
    for key, group in answered.groupby(keys_all, sort=True):
        mask = keys_labelled == key
        counts = group["model_version"].value_counts()
        versions = ", ".join(f"v{v} {c / len(group):.0%}" for v, c in counts.items())
        latency = group.drop_duplicates(["ts", "latency_ms"])["latency_ms"].to_numpy(float)
        rows.append(PeriodRow(
            period=str(key), rows=len(group), labelled=int(mask.sum()),
            deployed=_metric(metric, truth[mask], served[mask]) if mask.sum() else None,
            baseline=_metric(metric, truth[mask], offline[mask])
            if offline is not None and mask.sum() else None,
            versions=versions, p50_ms=_pct(latency, 50), p99_ms=_pct(latency, 99)))
    return tuple(rows)


def _metric(metric: Any, y: np.ndarray, prediction: np.ndarray) -> float | None:
    if len(y) == 0:
        return None
    try:
        value = float(metric.compute(y, prediction))
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def _pct(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _throughput(per_request: pd.DataFrame) -> float | None:
    """Requests per second over the seconds the server was answering."""
    if per_request.empty:
        return None
    seconds = per_request["ts"].dt.floor("s").nunique()
    return float(len(per_request) / max(int(seconds), 1))


def _client_failures(project: ProjectContext) -> int | None:
    path = Path(project.workspace.root) / "demo.json"
    if not path.exists():
        return None
    try:
        return int(json.loads(path.read_text(encoding="utf-8")).get("failed", 0))
    except (ValueError, TypeError, AttributeError):
        return None


def _with_clock(entries: Any) -> list[tuple[AuditEntry, str | None]]:
    """Each entry with the loop's clock: its own, or the last one before it (rollout steps
    are recorded by the server in wall-clock time, between the loop's entries)."""
    out, clock = [], None
    for entry in entries:
        clock = (entry.evidence or {}).get("clock") or clock
        out.append((entry, clock))
    return out


def _event(entry: AuditEntry, clock: str | None) -> dict[str, Any]:
    evidence = entry.evidence or {}
    return {"seq": entry.seq, "time": entry.time, "clock": clock, "action": entry.action,
            "reason": entry.reason, "version": entry.to_version,
            "metrics": evidence.get("metrics", {}), "drifted": evidence.get("drifted", []),
            "holdout": evidence.get("holdout", {})}


def gather_decisions(entries: Sequence[AuditEntry]) -> tuple[dict[str, Any], ...]:
    """The report's decision rows: every alias change in the log, whoever made it (by hand,
    forced, a rollout, the loop, training, recovered after a crash), and the rollouts' and
    the loop's steps."""
    return tuple(_decision(e, clock) for e, clock in _with_clock(entries)
                 if e.alias in _ALIASES or e.action.startswith("rollout")
                 or e.action == "loop_rollout_done")


def _decision(entry: AuditEntry, clock: str | None) -> dict[str, Any]:
    evidence = entry.evidence or {}
    return {"seq": entry.seq, "time": entry.time, "clock": clock, "action": entry.action,
            "reason": entry.reason, "from": entry.from_version, "to": entry.to_version,
            "alias": entry.alias, "origin": origin_of(entry.action),
            "forced": bool(evidence.get("forced")), "recovered": entry.recovered,
            "promoted": entry.action == "loop_rollout_done" and
            evidence.get("champion") == evidence.get("version"),
            "evidence": evidence}


def origin_of(action: str) -> str:
    """Who made a change: ``by hand``, ``by a rollout``, ``by the loop`` or ``at training``."""
    if action.startswith("rollout"):
        return "by a rollout"
    if action.startswith("loop"):
        return "by the loop"
    if action in ("register", "auto_promote"):
        return "at training"
    return "by hand"


def champion_changes(decisions: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> str:
    """``3 champion change(s): 1 promotion by hand (forced), 2 rollbacks by a rollout``, or
    empty when the champion never moved; counts exactly the champion rows of the table."""
    moves = [d for d in decisions if d.get("alias") == CHAMPION and d.get("to") is not None]
    if not moves:
        return ""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for d in moves:
        kind = "rollback" if d["action"].endswith("rollback") else \
            "registration" if d["action"] == "register" else "promotion"
        groups.setdefault((kind, d["origin"]), []).append(d)
    order = ("promotion", "rollback", "registration")
    named = []
    for (kind, origin), rows in sorted(groups.items(), key=lambda kv: order.index(kv[0][0])):
        forced = sum(1 for d in rows if d.get("forced"))
        named.append(f"{len(rows)} {kind}{'s' if len(rows) != 1 else ''} {origin}"
                     + (f" ({forced} forced)" if forced else ""))
    return f"{len(moves)} champion change(s): " + ", ".join(named)


def _count(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1_000_000 else f"{n:,}"
