"""`flywheel promote / rollback / history / gates / card`: what serves, and why."""

from __future__ import annotations

import json
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flywheel.core.spec import SPEC_FILE
from flywheel.pipelines import Project

if TYPE_CHECKING:  # type-only: importing them at run time would load MLflow before it is needed
    from flywheel.evaluation import GateReport
    from flywheel.pipelines.promote import AliasChange

_out = Console()
_err = Console(stderr=True)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to flywheel.yaml.")]
_STATUS_STYLE = {"pass": "[green]PASS[/green]", "fail": "[red]FAIL[/red]",
                 "skip": "[dim]skip[/dim]"}


def register(app: typer.Typer) -> None:
    app.command("promote")(promote)
    app.command("rollback")(rollback)
    app.command("history")(history)
    app.command("gates")(gates)
    app.command("card")(card)


def promote(
    version: Annotated[str, typer.Argument(help="Version number (3, v3) or alias (challenger).")],
    reason: Annotated[str | None, typer.Option(help="Why; recorded in the audit log.")] = None,
    force: Annotated[bool, typer.Option(
        help="Promote a version that failed its gates (needs --reason).")] = False,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Make VERSION the champion. Refuses a version that failed a gate unless --force."""
    if force and not (reason and reason.strip()):
        raise typer.BadParameter("--force needs --reason: say why a version that failed its "
                                 "gates should serve anyway.", param_hint="--reason")
    change = Project.load(config).promote(version, reason=reason, force=force)
    _print_change(change, "promoted")


def rollback(
    reason: Annotated[str | None, typer.Option(help="Why; recorded in the audit log.")] = None,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Point the champion back at the previous champion."""
    change = Project.load(config).rollback(reason=reason)
    _print_change(change, "rolled back")


def _print_change(change: AliasChange, verb: str) -> None:
    if not change.changed:
        _out.print(f"version {change.to_version} is already {change.alias}; nothing changed")
        return
    was = f"version {change.from_version}" if change.from_version else "no version"
    forced = " [yellow](forced past failed gates)[/yellow]" if change.forced else ""
    _out.print(f"[green]✓[/green] {verb}: {change.alias} is version {change.to_version} "
               f"(was {was}){forced}; recorded in the audit log as entry "
               f"{', '.join(str(e.seq) for e in change.entries)}", highlight=False)


def history(
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as JSON.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Show the last N entries.")] = None,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Every alias change (register, promote, rollback) with time, user, reason and evidence."""
    hist = Project.load(config).history()
    # The changes, and where recovery settled a change a crash left half made, its note.
    settled = [r for r in hist.records if r.kind == "resolved" and r.recovered is not None]
    shown = sorted([*hist.entries, *settled], key=lambda e: e.seq)
    entries = shown[-limit:] if limit else shown
    if as_json:
        typer.echo(json.dumps({"entries": [e.to_dict() for e in entries if e.kind == "change"],
                               "recoveries": [e.to_dict() for e in entries
                                              if e.kind == "resolved"],
                               "problems": [vars(p) for p in hist.problems]}, indent=2))
    elif not entries:
        _out.print("No alias changes recorded yet; `flywheel train` registers the first version.")
    else:
        # One block per change rather than a table: reasons and evidence are long, and a
        # table of eight columns folds them into unreadable slivers in a narrow terminal.
        for e in entries:
            when = f"[bold]#{e.seq}[/bold] {e.time[:19].replace('T', ' ')} UTC"
            if e.kind == "resolved":
                _out.print(f"{when}  [yellow]recovery[/yellow] of intent #{e.intent}: "
                           f"{escape(e.reason)}", highlight=False, soft_wrap=True)
                continue
            change = f"{e.alias} {e.from_version or '-'} → {e.to_version or '-'}"
            _out.print(f"{when}  {e.user}  [cyan]{e.action}[/cyan]  {change}",
                       highlight=False, soft_wrap=True)
            _out.print(f"    reason: {escape(e.reason)}", highlight=False, soft_wrap=True)
            if e.recovered:
                _out.print(f"    [yellow]recovered:[/yellow] {escape(e.recovered)}",
                           highlight=False, soft_wrap=True)
            evidence = _evidence_text(e.evidence)
            if evidence:
                _out.print(f"    evidence: {escape(evidence)}", highlight=False,
                           soft_wrap=True)
    for problem in hist.problems:
        _err.print(f"[yellow]warning:[/yellow] {escape(str(problem))}", highlight=False)


def _evidence_text(evidence: dict[str, object]) -> str:
    parts = []
    for key in ("gates", "champion_comparison", "rolled_back", "failed_gates"):
        if key in evidence:
            value = evidence[key]
            text = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
            parts.append(text if key == "gates" else f"{key.replace('_', ' ')}: {text}")
    return " | ".join(parts)


def gates(
    version: Annotated[str, typer.Argument(
        help="Version number, alias, or latest.")] = "latest",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    rerun: Annotated[bool, typer.Option(
        "--rerun", help="Run the gates again against the current flywheel.yaml and champion, "
                        "store the results on the version, and record it in the audit log.")
    ] = False,
    data: Annotated[Path | None, typer.Option(
        help="With --rerun: labelled data to judge it on (default: the spec's data; rows the "
             "version trained on are left out).")] = None,
    reason: Annotated[str | None, typer.Option(
        help="With --rerun: why; recorded in the audit log.")] = None,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Show the gate results recorded for a version (or --rerun them). Exit 1 if it failed a
    gate."""
    # Imported here: the promotion pipeline loads MLflow, which --help should not pay.
    from flywheel.pipelines.promote import gates_of

    if (data is not None or reason is not None) and not rerun:
        raise typer.BadParameter("--data and --reason go with --rerun.", param_hint="--rerun")
    project = Project.load(config)
    if rerun:
        from flywheel.pipelines.gates import rerun_gates

        done = rerun_gates(project, version, data=data, reason=reason)
        number, report = done.version, done.report
        if not as_json:
            _err.print(f"re-ran the gates of version {number} on {done.rows:,} rows it never "
                       f"trained on (before: {escape(done.before)}); stored on the version, "
                       f"audit entry {done.entry.seq}", highlight=False, soft_wrap=True)
    else:
        number, report = gates_of(project, version)
    if as_json:
        typer.echo(report.to_json())
    else:
        print_gates(report, title=f"Gates of version {number}")
    if not report.passed:
        raise typer.Exit(1)


def print_gates(report: GateReport, *, title: str = "Gates", console: Console = _out) -> None:
    """The gate table: one row per gate with its verdict and reason."""
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("gate", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for r in report.results:
        detail = escape(r.reason) + (f"\n[red]{escape(r.error)}[/red]" if r.error else "")
        table.add_row(r.name, _STATUS_STYLE[r.status], detail)
    console.print(table)
    mark = "[green]✓[/green]" if report.passed else "[red]✗[/red]"
    console.print(f"{mark} {report.summary()}", highlight=False)


def card(
    version: Annotated[str, typer.Argument(
        help="Version number, alias, or latest.")] = "champion",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Folder to write the card to (default .flywheel/cards/vN).")] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open it in a browser.")] = False,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Fetch a version's model card (HTML with plots, Markdown) and optionally open it."""
    page = Project.load(config).model_card(version, output)
    _out.print(f"[green]✓[/green] model card: {page} (Markdown: "
               f"{page.with_name('model_card.md')})", highlight=False)
    if open_browser:
        webbrowser.open(page.resolve().as_uri())
