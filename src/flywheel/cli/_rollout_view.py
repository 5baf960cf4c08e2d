"""How `flywheel rollout` shows a rollout: the line printed when one starts, and the status
tables."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from flywheel.pipelines.rollout import RolloutStatus
    from flywheel.rollout import RolloutState

_STATUS_STYLE = {"running": "bold cyan", "promoted": "bold green", "rolled_back": "bold red",
                 "completed": "bold", "stopped": "yellow"}


def started_text(state: RolloutState) -> str:
    """What `flywheel rollout KIND` prints once the rollout is stored."""
    policy = state.policy
    head = (f"[green]✓[/green] {state.kind} rollout {state.id} of version {state.challenger} "
            f"started (champion: version {state.champion})")
    if policy.kind == "canary":
        stages = " → ".join(f"{s:g} %" for s in policy.stages)
        body = (f"stages {stages}; each needs {policy.min_requests} challenger requests"
                + (f" and {policy.min_labels} labels" if policy.limits.max_metric_drop
                   is not None and policy.min_labels else ""))
    elif policy.kind == "shadow":
        body = f"mirroring {policy.share:.0%} of requests; judged after {policy.min_requests}"
    elif policy.kind == "ab":
        body = f"split {1 - policy.split:.0%} / {policy.split:.0%} by {policy.unit_header}; " \
               f"metric {policy.metric}; " + _plan_text(state.plan, policy)
    elif policy.kind == "blue_green":
        body = (f"warming up on {policy.warmup_rows} rows, then switching all traffic; "
                f"watching {policy.bake_requests} requests after")
    else:
        body = f"arms {', '.join('v' + a for a in policy.arms)}; floor {policy.floor:.0%}; " \
               f"reward {policy.metric}"
    return f"{head}\n  {escape(body)}\n  `flywheel rollout status --watch` follows it."


def _plan_text(plan: dict[str, Any] | None, policy: Any) -> str:
    if not plan:
        return (f"minimum detectable effect {policy.mde:g}; the sample size is planned once "
                "labelled champion requests show the metric's spread")
    return (f"minimum detectable effect {plan['mde']:g} from a baseline of "
            f"{plan['baseline']:.4g} ({plan['baseline_from']}): about "
            f"{plan['sequential_per_arm']:,} labelled requests per arm with the sequential "
            f"test (a single-look test would need {plan['fixed_per_arm']:,}); alpha "
            f"{plan['alpha']:g}, power {plan['power']:.0%}")


def render_status(status: RolloutStatus) -> RenderableType:
    """The status view: a header, traffic, evidence per arm, test, decisions."""
    state = status.state
    if state is None:
        return Text("No rollout has been started for this model; `flywheel rollout canary` "
                    "starts one.")
    parts: list[RenderableType] = []
    style = _STATUS_STYLE.get(state.status, "bold")
    header = Text.assemble(
        (f"{state.kind} rollout {state.id}", "bold"), "  ", (state.status, style),
        f"  version {state.challenger} vs champion {state.champion}",
        f"  started {state.started:%Y-%m-%d %H:%M:%S} UTC by {state.started_by or '?'}",
        f"  revision {state.revision}")
    parts.append(header)
    if state.policy.kind == "canary":
        stages = "  ".join((f"[{s:g} %]" if i == state.stage else f"{s:g} %")
                           for i, s in enumerate(state.policy.stages))
        parts.append(Text(f"stages: {stages}"))
    traffic = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title="traffic")
    for heading in ("arm", "version", "share"):
        traffic.add_column(heading, no_wrap=True)
    shown = state.traffic(status.champion)
    for route in shown.routes:
        traffic.add_row(route.arm, route.version, f"{route.weight:.0%}")
    if shown.shadow is not None:
        traffic.add_row("shadow", shown.shadow.version, f"{shown.shadow.weight:.0%} mirrored")
    parts.append(traffic)
    if status.evidence is not None:
        parts.append(_evidence_table(status.evidence.to_dict()))
        if status.evidence.shadow is not None and status.evidence.shadow.pairs:
            sh = status.evidence.shadow
            parts.append(Text(f"shadow: {sh.pairs} paired requests, agreement "
                              f"{sh.agreement:.1%}, mean |Δ| {sh.mean_abs_delta:.4f}"))
    if state.plan:
        parts.append(Text("plan: " + _plan_text(state.plan, state.policy)))
    if state.kind == "ab":
        parts.append(Text(f"always-valid p-value so far: {state.p_value:.4g}"))
    if state.decision:
        last = state.decision
        parts.append(Text.assemble(("last decision: ", "bold"),
                                   f"{last.get('action')} at {last.get('at', '?')}: "
                                   f"{last.get('reason', '')}"))
        for breach in last.get("breached", []) or []:
            parts.append(Text(f"  breached: {breach}", style="red"))
    if status.preview is not None and state.running:
        parts.append(Text.assemble(("now: ", "bold"), f"{status.preview.action}: "
                                   f"{status.preview.reason}"))
    return Group(*parts)


def _evidence_table(arms: dict[str, Any]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  title="evidence since the start")
    for heading in ("arm", "version", "requests", "errors", "error rate", "p50 ms", "p99 ms",
                    "labels", "metric", "this stage"):
        table.add_column(heading, no_wrap=True, justify="left" if heading in ("arm",
                                                                                "version")
                         else "right")
    for name, arm in arms.items():
        if name == "shadow_pairs":
            continue
        table.add_row(name, arm["version"], str(arm["requests"]), str(arm["errors"]),
                      f"{arm['error_rate']:.2%}", _num(arm["p50_ms"]), _num(arm["p99_ms"]),
                      str(arm["labels"]), _num(arm["metric"], 4), str(arm["stage_requests"]))
    return table


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"
