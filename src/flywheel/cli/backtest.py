"""`flywheel backtest`: the whole loop replayed on any time-ordered table."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from flywheel.cli.loop import print_report, write_report
from flywheel.core.errors import ConfigError
from flywheel.core.openmp import share_cores
from flywheel.core.timeparse import parse_iso_time
from flywheel.core.yamlio import read_yaml

_out = Console()


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest)


def backtest(
    data: Annotated[Path, typer.Argument(help="The history: a CSV or Parquet table, one row per "
                                              "event, with its true outcome.")],
    time_column: Annotated[str, typer.Option("--time-column", help="The column with each row's "
                                                                   "time.")],
    target: Annotated[str | None, typer.Option(help="The column to predict (default: the "
                                                    "--config spec's target).")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="A flywheel.yaml whose training, validation, monitoring, "
                               "retraining and rollout choices the backtest uses.")] = None,
    train_until: Annotated[str | None, typer.Option(
        help="Train on the rows before this ISO 8601 time (default: the first sixth of the "
             "history's span).")] = None,
    feedback_delay: Annotated[str, typer.Option(
        help="Simulated time until a row's true outcome arrives (30m, 6h, 2d).")] = "6h",
    step: Annotated[str, typer.Option(
        help="Simulated time between two checks of the retraining loop.")] = "7d",
    drop: Annotated[list[str] | None, typer.Option(
        help="A column to leave out (known only after the outcome); repeat for more.")] = None,
    every: Annotated[int, typer.Option(min=1, help="Replay every n-th row (and train on "
                                                   "every n-th).")] = 1,
    quick: Annotated[bool, typer.Option("--quick", help="Small search budgets: a few "
                                                        "minutes.")] = False,
    directory: Annotated[Path | None, typer.Option(
        help="Where the backtest project goes (emptied; default .backtest/<data name>).")]
    = None,
) -> None:
    """What the loop would have done on this history: train on the first period, serve, replay
    the rest as live traffic in accelerated time with the true outcomes as delayed feedback,
    retrain, roll out and decide; end with the delivery report against the version never
    retrained."""
    share_cores()  # it trains and retrains beside the server it replays traffic into
    from flywheel.data import load_table  # noqa: PLC0415 - slow imports
    from flywheel.demo import BacktestSettings, run_backtest  # noqa: PLC0415

    spec = _spec(config)
    target = target or (spec.get("target") or {}).get("column")
    if not target:
        raise ConfigError("no target: pass --target with the column to predict, or --config "
                          "with a flywheel.yaml that names one.")
    until = _time(train_until) if train_until is not None else None
    base = BacktestSettings.quick() if quick else BacktestSettings()
    settings = dataclasses.replace(
        base, feedback_delay=_duration("--feedback-delay", feedback_delay),
        step=_duration("--step", step), every=every)
    history = load_table(data)
    missing = sorted(set(drop or ()) - set(history.columns))
    if missing:
        raise ConfigError(f"--drop names column(s) {', '.join(missing)} that {data} does not "
                          f"have; its columns are {', '.join(map(str, history.columns))}.")
    history = history.drop(columns=list(drop or ()))
    root = (directory or Path(".backtest") / data.stem).resolve()
    started = time.monotonic()
    project = run_backtest(root, history, target=target, time_column=time_column,
                           train_until=until, settings=settings, spec=spec, name=data.stem,
                           say=lambda text: _out.print(escape(text), highlight=False))
    html = project.workspace.root / "report.html"
    delivered = write_report(project, html=html, markdown=root / "report.md")
    print_report(delivered, html)
    _out.print(f"Backtest finished in {time.monotonic() - started:.0f} s; project in {root}")


def _spec(config: Path | None) -> dict[str, Any]:
    if config is None:
        return {}
    path = config / "flywheel.yaml" if config.is_dir() else config
    if not path.exists():
        raise ConfigError(f"no project spec at {path}; pass --config with a flywheel.yaml.",
                          path=path)
    spec = read_yaml(path)
    if not isinstance(spec, dict):
        raise ConfigError("a project spec must be a mapping of sections.", path=path)
    return spec


def _time(text: str) -> dt.datetime:
    try:
        return parse_iso_time(text)
    except ValueError as exc:
        raise ConfigError(f"--train-until must be an ISO 8601 time such as 2011-03-01 or "
                          f"2011-03-01T00:00Z, got {text!r}.") from exc


def _duration(option: str, text: str) -> dt.timedelta:
    import pandas as pd  # noqa: PLC0415 - slow import

    try:
        value = pd.Timedelta(text).to_pytimedelta()
    except ValueError:
        value = None
    if value is None or value <= dt.timedelta(0):
        raise ConfigError(f"{option} must be a positive duration such as 30m, 6h or 7d, got "
                          f"{text!r}.")
    return value
