"""`flywheel loop` (the retraining controller), `flywheel report` (the delivery report) and
`flywheel demo` (the whole loop on bundled real data)."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flywheel.core.openmp import share_cores
from flywheel.core.spec import SPEC_FILE
from flywheel.core.workspace import atomic_write_text
from flywheel.pipelines import Project

if TYPE_CHECKING:  # the loop's stack (MLflow, LightGBM) loads when a command runs
    from flywheel.pipelines.loop import TickResult
    from flywheel.pipelines.report import DeliveryReport

_out = Console()
_err = Console(stderr=True)
# The report's tables are wide; a pipe or a file (no terminal to measure) gets 120 columns.
_wide = _out if _out.is_terminal else Console(width=120)
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to flywheel.yaml.")]


def register(app: typer.Typer) -> None:
    app.command("loop")(loop)
    app.command("report")(report)
    app.command("demo")(demo)


def loop(
    once: Annotated[bool, typer.Option("--once", help="Run one tick and exit (for cron).")] = False,
    interval: Annotated[float | None, typer.Option(
        min=0.1, help="Seconds between ticks (default: retraining.interval_seconds).")] = None,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """The controller: check triggers, retrain, gate, roll out and decide; crash-safe."""
    share_cores()  # it retrains beside the servers it rolls out to
    from flywheel.pipelines.loop import RetrainingLoop  # noqa: PLC0415 - slow imports

    project = Project.load(config)
    controller = RetrainingLoop(project, on_event=_show_tick)
    if once:
        controller.tick()
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    every = interval or project.spec.retraining.interval_seconds
    _err.print(f"flywheel loop: a tick every {every:g} s; Ctrl-C stops after the current step",
               highlight=False)
    controller.run(interval=every, stop=stop)


def _show_tick(result: TickResult) -> None:
    colour = {"promoted": "green", "rolled_back": "yellow", "gates_failed": "yellow",
              "retrain_failed": "red", "error": "red"}.get(result.action, "cyan")
    _out.print(f"{time.strftime('%H:%M:%S')} [{colour}]{result.action}[/{colour}] "
               f"{escape(result.detail)}", highlight=False)


def report(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    markdown: Annotated[Path | None, typer.Option(help="Also write Markdown here.")] = None,
    html: Annotated[Path | None, typer.Option(
        help="Write the HTML report here (default: .flywheel/report.html).")] = None,
    baseline: Annotated[str | None, typer.Option(
        help="The never-retrained version to compare with (default: version 1).")] = None,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """The delivery report: metric over time against a never-retrained baseline, latency,
    throughput, reliability, drift, retraining and rollout decisions."""
    project = Project.load(config)
    delivered = write_report(project, html=html, markdown=markdown, baseline=baseline)
    if as_json:
        _out.print_json(json.dumps(delivered.to_dict(), default=str))
    else:
        print_report(delivered, html or project.workspace.root / "report.html")


def write_report(project: Project, *, html: Path | None = None, markdown: Path | None = None,
                  baseline: str | None = None) -> DeliveryReport:
    from flywheel.pipelines.report import build_report  # noqa: PLC0415 - slow imports
    from flywheel.pipelines.report_render import report_html, report_markdown  # noqa: PLC0415

    delivered = build_report(project, baseline=baseline)
    atomic_write_text(html or project.workspace.root / "report.html", report_html(delivered))
    if markdown is not None:
        atomic_write_text(markdown, report_markdown(delivered))
    return delivered


def print_report(delivered: DeliveryReport, html: Path) -> None:
    _wide.print(f"\n[bold]Delivery report: {escape(delivered.model)}[/bold]\n")
    _wide.print(escape(delivered.summary()), soft_wrap=False)
    table = Table(box=box.SIMPLE_HEAD, title=f"Measured {delivered.metric} on labelled traffic")
    for head in ("period", "predictions", "labelled", "deployed", f"v{delivered.baseline_version}"
                 " never retrained", "difference", "p99 ms", "served by"):
        table.add_column(head, justify="left" if head in ("period", "served by") else "right")
    for p in delivered.periods:
        diff = None if p.deployed is None or p.baseline is None else p.deployed - p.baseline
        table.add_row(p.period, f"{p.rows:,}", f"{p.labelled:,}", _n(p.deployed),
                      _n(p.baseline), "–" if diff is None else f"{diff:+.4f}", _n(p.p99_ms, 2),
                      p.versions)
    if delivered.periods:
        table.add_row("all", f"{delivered.predictions:,}", "", _n(delivered.deployed),
                      _n(delivered.baseline), "–" if delivered.deployed is None or
                      delivered.baseline is None else
                      f"{delivered.deployed - delivered.baseline:+.4f}", _n(delivered.p99_ms, 2),
                      "", style="bold")
        _wide.print(table)
    events = [*delivered.events, *delivered.decisions]
    if events:
        log = Table(box=box.SIMPLE_HEAD, title="Retraining and rollout decisions")
        for head in ("when", "what", "why"):
            log.add_column(head)
        for e in sorted(events, key=lambda e: e["seq"]):
            log.add_row((e.get("clock") or e["time"])[:10], e["action"], escape(e["reason"]))
        _wide.print(log)
    for note in delivered.notes:
        _wide.print(f"[yellow]note:[/yellow] {escape(note)}")
    _wide.print(f"HTML report with plots: {html}")


def _n(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def demo(
    quick: Annotated[bool, typer.Option("--quick", help="A quarter of the flights and smaller "
                                                        "budgets: about three minutes.")] = False,
    directory: Annotated[Path, typer.Option(help="Where the demo project goes (emptied).")] =
        Path(".demo/flights"),
) -> None:
    """The whole loop on a real year of New York flights: train on January-February, serve,
    replay March-December with delayed labels, retrain on drift, roll out, decide, report."""
    share_cores()  # it trains and retrains beside the server it replays traffic into
    from flywheel.demo import DemoSettings, run_demo  # noqa: PLC0415 - slow imports

    settings = DemoSettings.quick() if quick else DemoSettings()
    started = time.monotonic()
    project = run_demo(directory.resolve(), settings=settings,
                       say=lambda text: _out.print(escape(text), highlight=False))
    html = project.workspace.root / "report.html"
    delivered = write_report(project, html=html, markdown=directory / "report.md")
    print_report(delivered, html)
    _out.print(f"Demo finished in {time.monotonic() - started:.0f} s; project in {directory}")
