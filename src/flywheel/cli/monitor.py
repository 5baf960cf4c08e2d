"""`flywheel monitor`: drift, data quality, performance and alerts for a window, once or on an
interval.

Exit codes: 0 no alert, 3 an alert rule fired, 2 bad input (options, data file, spec).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flywheel.core.errors import FlywheelError, MonitoringError
from flywheel.core.spec import SPEC_FILE
from flywheel.pipelines import Project

if TYPE_CHECKING:  # type-only: the monitoring stack loads when the command runs
    from flywheel.monitoring import MonitorResult

ALERT_EXIT = 3

_out = Console()
_err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)


def monitor(
    data: Annotated[Path | None, typer.Option(
        "--data", help="Monitor this CSV or Parquet file instead of the prediction log.")] = None,
    last: Annotated[int | None, typer.Option(
        min=1, help="The last N rows (default: monitoring.window_rows of the log).")] = None,
    since: Annotated[str | None, typer.Option(
        help="Start of the window: ISO time (UTC by default) or a duration back, e.g. 6h.")
    ] = None,
    until: Annotated[str | None, typer.Option(
        help="End of the window (exclusive): ISO time or a duration back.")] = None,
    version: Annotated[str | None, typer.Option(
        help="Version or alias to compare against (default: monitoring.version).")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print every verdict, score and threshold as JSON.")] = False,
    report: Annotated[Path | None, typer.Option(
        help="Write the HTML report here (default: monitoring.report).")] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Write no HTML report.")
                         ] = False,
    watch: Annotated[bool, typer.Option(
        "--watch", help="Monitor again every --interval seconds until interrupted.")] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between windows (--watch).")
                        ] = 300.0,
    iterations: Annotated[int | None, typer.Option(
        min=1, hidden=True, help="Stop --watch after this many windows.")] = None,
    config: Annotated[Path, typer.Option("--config", "-c", help="Path to flywheel.yaml.")] = Path(
        SPEC_FILE),
) -> None:
    """Compare a window of production data with the serving model's reference: drift, data
    quality, performance (measured with labels, estimated without), latency and errors; send
    alerts and write an HTML report. Exit 3 when an alert rule fired."""
    from flywheel.pipelines.monitor import WindowRequest, monitor_project, parse_time, watch_project

    if data is not None and (since or until):
        raise MonitoringError("--since/--until select rows of the prediction log; with --data, "
                              "use --last N or pass a file holding just the window.")
    project = Project.load(config)
    request = WindowRequest(data=data, last=last,
                            since=parse_time(since) if since else None,
                            until=parse_time(until) if until else None)
    target = False if no_report else report
    if not watch:
        result = monitor_project(project, request, version=version, report=target)
        _show(result, as_json)
        if result.alerted:
            raise typer.Exit(ALERT_EXIT)
        return

    def on_error(exc: Exception) -> None:
        kind = "error" if isinstance(exc, FlywheelError) else f"unexpected {type(exc).__name__}"
        _err.print(f"[red]{kind}:[/red] {escape(str(exc))} [dim](the watcher goes on)[/dim]",
                   highlight=False, soft_wrap=True)

    def on_result(result: MonitorResult) -> None:
        _show(result, as_json)

    if not as_json:
        _out.print(f"Watching every {interval:g} s; Ctrl-C stops.")
    try:
        alerted = watch_project(project, request, interval=interval, iterations=iterations,
                                version=version, report=target, on_result=on_result,
                                on_error=on_error)
    except KeyboardInterrupt:
        return
    if alerted:
        raise typer.Exit(ALERT_EXIT)


def _show(result: MonitorResult, as_json: bool) -> None:
    if as_json:
        typer.echo(result.to_json())
        return
    m = result.metrics
    now = dt.datetime.now().strftime("%H:%M:%S")
    table = Table(title=f"{now} · {result.model} v{result.version} · "
                        f"{result.window.description} · {result.window.rows:,} rows",
                  box=box.SIMPLE_HEAD, show_edge=False, title_justify="left")
    # Column names fold rather than end in an ellipsis when the console is narrow.
    table.add_column("check", overflow="fold")
    table.add_column("result", justify="right", overflow="fold")
    table.add_column("detail", overflow="fold")
    if result.drift is not None and result.drift.features:
        d = result.drift
        weighted = f", {d.weighted_share:.0%} of importance" if d.importance is not None else ""
        table.add_row("drift", _flag(d.dataset_drift, f"{d.share:.0%} of columns{weighted}"),
                      ", ".join(d.drifted[:8]) + (" ..." if len(d.drifted) > 8 else ""))
        for c in d.columns:
            if c.role != "feature":
                table.add_row(f"  {c.role} drift", _flag(c.drifted, f"{c.score:.3g}"),
                              f"{c.column}, {c.method}")
    if result.multivariate is not None:
        mv = result.multivariate
        table.add_row("multivariate", _flag(mv.drifted, f"AUC {mv.roc_auc:.3f}, "
                                                        f"p {mv.p_value:.2g}"),
                      ", ".join(c for c, _ in mv.top_columns[:3]))
    if result.quality is not None:
        q = m.get("schema_violations", 0)
        table.add_row("data quality", _flag(q > 0, f"{int(q)} violation(s)"),
                      f"nulls ≤ {m.get('null_rate_max', 0):.1%}, unseen ≤ "
                      f"{m.get('unseen_category_rate_max', 0):.1%}, out of range ≤ "
                      f"{m.get('out_of_range_rate_max', 0):.1%}")
    p = result.performance
    if p is not None:
        for name, ci in p.measured.items():
            if name in ("roc_auc", "accuracy", "rmse", "r2"):
                table.add_row(f"{name} (measured)", f"{ci.value:.4f}",
                              f"[{ci.low:.4f}, {ci.high:.4f}] on {p.labelled_rows:,} labels")
        for name, value in p.estimated.items():
            table.add_row(f"{name.removeprefix('estimated_')} (estimated)", f"{value:.4f}",
                          "CBPE; assumes no concept drift")
    o = result.operational
    if "p99_ms" in o:
        table.add_row("latency", f"p99 {o['p99_ms']:.2f} ms", f"p50 {o['p50_ms']:.2f} ms")
    if "error_rate" in o:
        table.add_row("errors", _flag(o["error_rate"] > 0, f"{o['error_rate']:.2%}"),
                      f"{int(o.get('errors', 0))} of {int(o.get('requests', 0))} requests")
    _out.print(table)
    for alert in result.alerts:
        held = " [dim](repeat; held back by the cool-down)[/dim]" if result.held_back(alert) \
            else ""
        _out.print(f"[bold red]ALERT[/bold red] {escape(alert.message)}{held}", highlight=False)
    for note in result.notes:
        _out.print(f"[yellow]not computed:[/yellow] {escape(note)}", highlight=False)
    if result.report_path:
        _out.print(f"report: {result.report_path}", highlight=False)


def _flag(bad: bool, text: str) -> str:
    return f"[red]{escape(text)}[/red]" if bad else f"[green]{escape(text)}[/green]"
