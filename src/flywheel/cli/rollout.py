"""`flywheel rollout canary|shadow|ab|blue-green|bandit|status|stop|decide`: a challenger reaches
users step by step, and the controller decides from evidence."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from flywheel.cli._rollout_view import render_status, started_text
from flywheel.core.spec import SPEC_FILE
from flywheel.pipelines import Project

if TYPE_CHECKING:
    from flywheel.rollout import RolloutState

_out = Console()
_err = Console(stderr=True)

app = typer.Typer(name="rollout", no_args_is_help=True, add_completion=False,
                  help="Roll a challenger out (canary, shadow, A/B, blue-green, bandit); "
                       "status; stop.")
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to flywheel.yaml.")]
VersionArg = Annotated[str | None, typer.Argument(
    help="Version number or alias to roll out; default: the challenger.")]
ReasonOption = Annotated[str | None, typer.Option(help="Why; recorded in the audit log.")]
ForceOption = Annotated[bool, typer.Option(
    "--force", help="Start it although the version failed its gates (needs --reason; "
                    "audited): the live rollout judges what the holdout could not.")]
ErrorRateOption = Annotated[float | None, typer.Option(
    "--max-error-rate", min=0.0, max=1.0, help="Largest share of failed challenger calls.")]


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="rollout")


def _start(config: Path, kind: str, version: str | None, reason: str | None,
           overrides: dict[str, Any], force: bool = False) -> RolloutState:
    if force and not (reason and reason.strip()):
        raise typer.BadParameter("--force needs --reason: say why a version that failed its "
                                 "gates should take live traffic.", param_hint="--reason")
    # Imported here: the rollout pipeline loads MLflow and the serving stage (seconds), which
    # `flywheel rollout --help` should not pay.
    from flywheel.pipelines.rollout import start_rollout

    state = start_rollout(Project.load(config), kind, version, reason=reason,
                          overrides=overrides, force=force)
    _out.print(started_text(state), highlight=False, soft_wrap=True)
    return state


@app.command("canary")
def canary(
    version: VersionArg = None,
    stages: Annotated[str | None, typer.Option(
        help="Challenger share per stage in percent, comma-separated, such as 5,25,50,100.")
    ] = None,
    min_requests: Annotated[int | None, typer.Option(
        min=1, help="Challenger requests each stage needs.")] = None,
    min_labels: Annotated[int | None, typer.Option(
        min=0, help="Labelled challenger requests each stage needs (metric limit).")] = None,
    max_error_rate: ErrorRateOption = None,
    reason: ReasonOption = None,
    force: ForceOption = False,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Staged weights (5 → 25 → 50 → 100 %); any breach of a limit rolls back at once."""
    _start(config, "canary", version, reason, {
        "stages": _stages(stages), "min_requests": min_requests, "min_labels": min_labels,
        "limits.max_error_rate": max_error_rate}, force=force)


@app.command("shadow")
def shadow(
    version: VersionArg = None,
    share: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="Share of requests mirrored to the challenger.")] = None,
    min_requests: Annotated[int | None, typer.Option(
        min=1, help="Mirrored requests before the comparison is judged.")] = None,
    then: Annotated[str | None, typer.Option(
        help="After a clean shadow: stop, canary or promote.")] = None,
    max_error_rate: ErrorRateOption = None,
    reason: ReasonOption = None,
    force: ForceOption = False,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Mirror a share of traffic to the challenger, off the response path."""
    _start(config, "shadow", version, reason, {
        "share": share, "min_requests": min_requests, "then": then,
        "limits.max_error_rate": max_error_rate}, force=force)


@app.command("ab")
def ab(
    version: VersionArg = None,
    split: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="The challenger's share of units.")] = None,
    metric: Annotated[str | None, typer.Option(
        help="accuracy, conversion, label, abs_error or squared_error.")] = None,
    mde: Annotated[float | None, typer.Option(
        help="Minimum detectable effect, in the metric's units.")] = None,
    alpha: Annotated[float | None, typer.Option(help="False-positive rate.")] = None,
    power: Annotated[float | None, typer.Option(help="Chance to detect the MDE.")] = None,
    baseline: Annotated[float | None, typer.Option(
        help="The champion's metric, to size the test.")] = None,
    max_samples: Annotated[int | None, typer.Option(
        help="Labelled requests per arm before 'no difference'.")] = None,
    reason: ReasonOption = None,
    force: ForceOption = False,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """A sticky split judged by an always-valid sequential test; shows the sample size."""
    _start(config, "ab", version, reason, {
        "split": split, "metric": metric, "mde": mde, "alpha": alpha, "power": power,
        "baseline": baseline, "max_samples": max_samples}, force=force)


@app.command("blue-green")
def blue_green(
    version: VersionArg = None,
    bake_requests: Annotated[int | None, typer.Option(
        min=0, help="Requests watched after the switch; a breach switches back.")] = None,
    max_error_rate: ErrorRateOption = None,
    reason: ReasonOption = None,
    force: ForceOption = False,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Warm up and health-check the new version, then switch all traffic at once."""
    _start(config, "blue_green", version, reason, {
        "bake_requests": bake_requests, "limits.max_error_rate": max_error_rate}, force=force)


@app.command("bandit")
def bandit(
    versions: Annotated[list[str] | None, typer.Argument(
        help="The competing versions; default: the champion and the challenger.")] = None,
    floor: Annotated[float | None, typer.Option(
        min=0.0, max=0.5, help="Smallest traffic share per arm.")] = None,
    metric: Annotated[str | None, typer.Option(help="The reward metric.")] = None,
    reason: ReasonOption = None,
    force: ForceOption = False,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Thompson sampling across versions on a reward from feedback, with a floor per arm."""
    arms = list(versions or [])
    if len(arms) == 1:
        raise typer.BadParameter("name two or more versions (or none: the champion and the "
                                 "challenger).", param_hint="VERSIONS")
    _start(config, "bandit", None, reason, {"arms": arms or None, "floor": floor,
                                            "metric": metric}, force=force)


@app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 2.0,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """The latest rollout: traffic, evidence per arm, last and next decision."""
    from flywheel.pipelines.rollout import rollout_status  # slow import; see _start

    project = Project.load(config)
    registry = project.registry()
    if as_json:
        typer.echo(json.dumps(rollout_status(project, registry=registry).to_dict(), indent=2,
                              default=str))
        return
    if not watch:
        _out.print(render_status(rollout_status(project, registry=registry)))
        return
    try:
        with Live(render_status(rollout_status(project, registry=registry)), console=_out,
                  refresh_per_second=4, transient=False) as live:
            while True:
                time.sleep(interval)
                live.update(render_status(rollout_status(project, registry=registry)))
    except KeyboardInterrupt:
        return


@app.command("stop")
def stop(
    reason: ReasonOption = None,
    force: Annotated[bool, typer.Option(
        help="Also clear a damaged rollout state from the registry.")] = False,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """End the running rollout; traffic returns to the champion."""
    from flywheel.pipelines.rollout import stop_rollout  # slow import; see _start

    state = stop_rollout(Project.load(config), reason=reason, force=force)
    if state is None:
        _out.print("[green]✓[/green] cleared the damaged rollout state; traffic goes to the "
                   "champion")
        return
    note = " (the switched version stays champion; `flywheel rollback` switches back)" \
        if state.phase == "switched" else "; traffic returns to the champion"
    _out.print(f"[green]✓[/green] stopped the {state.kind} rollout of version "
               f"{state.challenger}{note}", highlight=False)


@app.command("decide")
def decide_now(
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Decide once now and apply it (the server does so every rollout.tick_seconds)."""
    from flywheel.pipelines.rollout import RolloutController  # slow import; see _start

    decision = RolloutController(Project.load(config)).tick()
    if as_json:
        typer.echo(json.dumps(None if decision is None else decision.to_dict(), indent=2,
                              default=str))
    elif decision is None:
        _out.print("No rollout is running.")
    else:
        _out.print(f"[bold]{decision.action}[/bold]: {decision.reason}", highlight=False)


def _stages(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.replace("%", "").split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected percentages separated by commas, such as "
                                 f"5,25,50,100; got {text!r}", param_hint="--stages") from None
