"""`flywheel train`: search, evaluate and register a model, with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flywheel.cli.promote import print_gates
from flywheel.core.spec import SPEC_FILE
from flywheel.pipelines import Project

if TYPE_CHECKING:  # type-only: importing them at run time would load MLflow before it is needed
    from flywheel.pipelines.train import TrainResult
    from flywheel.training import TrialProgress

_out = Console()


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    data: Annotated[Path | None, typer.Option(
        "--data", help="Training data; the spec's data when omitted.")] = None,
    timeout: Annotated[float | None, typer.Option(
        min=1, help="Search time budget in seconds, a hard limit (a trial running at the "
                    "deadline is stopped). Without --trials, search until the budget.")] = None,
    trials: Annotated[int | None, typer.Option(
        min=1, help="Trials in the study, counting those of earlier runs it resumes "
                    "(overrides the spec for this run).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides the spec).")] = None,
    register_again: Annotated[bool, typer.Option(
        "--register-again", help="Register the study's best model even if it is registered "
                                 "already (by default a study that holds its trials registers "
                                 "nothing new).")] = False,
    config: Annotated[Path, typer.Option("--config", "-c", help="Path to flywheel.yaml.")] = Path(
        SPEC_FILE),
) -> None:
    """Validate the data, search learners and hyper-parameters with cross-validation,
    evaluate on a holdout, and register the model in MLflow."""
    project = Project.load(config)
    search = project.spec.training.search
    budget_time = timeout or search.timeout_seconds
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("{task.fields[trials]}"), TextColumn("best {task.fields[best]}"),
        TextColumn("{task.fields[left]}"), TimeElapsedColumn(), console=_out, transient=False,
    ) as progress:
        task = progress.add_task("Preparing", total=1.0, trials="", best="-", left="")

        def on_stage(name: str) -> None:
            progress.update(task, description=name)

        def on_trial(p: TrialProgress) -> None:
            finished, total = p.finished, p.total
            done = finished / total if total else 0.0
            left = ""
            if budget_time:
                done = max(done, min(1.0, p.elapsed / budget_time))
                left = f"{max(0.0, budget_time - p.elapsed):.0f} s left"
            best = p.best_value
            count = f"{finished}/{total} trials" if total else f"{finished} trials"
            progress.update(task, completed=min(done, 1.0), trials=count,
                            best=f"{best:.4f}" if best is not None else "-", left=left)

        result = project.train(data, trials=trials, timeout=timeout, seed=seed,
                               on_trial=on_trial, on_stage=on_stage,
                               until_budget=timeout is not None and trials is None,
                               register_again=register_again)
        progress.update(task, completed=1.0, description="Done")
    for note in result.notes:
        _out.print(f"[cyan]note[/cyan] {escape(note)}", highlight=False)
    if not result.registered:
        _out.print(f"version {result.version.version} "
                   f"({', '.join(result.version.aliases) or 'no alias'}): {result.learner}, "
                   + ", ".join(f"holdout {k} {v:.4f}" for k, v in result.holdout_metrics.items()
                               if k == result.metric), highlight=False)
        return
    _print_result(result)
    for warning in result.warnings:
        _out.print(f"[yellow]warning[/yellow] {escape(warning)}", highlight=False)
    if result.gates is not None:
        print_gates(result.gates, title=f"Gates of version {result.version.version}",
                    console=_out)
    if result.promoted:
        _out.print(f"[green]✓[/green] version {result.version.version} passed every gate and "
                   "was promoted to champion (promotion.auto)")


def _print_result(r: TrainResult) -> None:
    table = Table(title=f"Model version {r.version.version} "
                        f"({', '.join(r.version.aliases) or 'no alias'})")
    table.add_column("metric")
    table.add_column("cross-validation (mean ± std)", justify="right")
    table.add_column("holdout", justify="right")
    for name, value in r.holdout_metrics.items():
        cv = r.cv_metrics.get(name)
        std = r.cv_metrics.get(f"{name}_std")
        mark = " ◀" if name == r.metric else ""
        table.add_row(name + mark, f"{cv:.4f} ± {std:.4f}" if cv is not None else "-",
                      f"{value:.4f}")
    _out.print(table)
    trials = r.trials
    _out.print(
        f"learner [bold]{r.learner}[/bold] {r.params}\n"
        f"trials: {trials['complete']} complete, {trials['pruned']} pruned, {trials['fail']} failed"
        f" (study {r.study_name}); rows: {r.rows['search']:,} search, "
        f"{r.rows['holdout']:,} holdout; {r.duration_s:.1f} s\n"
        f"time: {_phases(r)}\n"
        f"MLflow run {r.run_id}", highlight=False)


def _phases(r: TrainResult) -> str:
    parts = []
    for phase, seconds in r.phases.items():
        text = f"{phase} {seconds:.1f} s"
        if phase == "search" and r.budget_s:
            ended = "the budget ended it" if r.deadline_hit else "ended before it"
            text += f" (budget {r.budget_s:g} s, {ended})"
        parts.append(text)
    return ", ".join(parts)
