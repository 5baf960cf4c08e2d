"""`flywheel models`: the registered versions with aliases, metrics and data fingerprints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flywheel.core.spec import SPEC_FILE
from flywheel.pipelines import Project

_out = Console()
_err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("models")(models)


def models(
    config: Annotated[Path, typer.Option("--config", "-c", help="Path to flywheel.yaml.")] = Path(
        SPEC_FILE),
    as_json: Annotated[bool, typer.Option("--json", help="Print the versions as JSON.")] = False,
) -> None:
    """List registered model versions, newest first."""
    # Imported here: the promotion pipeline loads MLflow, which --help should not pay.
    from flywheel.pipelines.dashboard import version_rows
    from flywheel.pipelines.promote import recover

    project = Project.load(config)
    registry = project.registry()
    recovered = recover(project, registry)
    rows = version_rows(project, registry)
    for r in recovered:  # on stderr, so --json output stays the list of versions
        _err.print(f"[yellow]recovered just now:[/yellow] {escape(str(r))}", highlight=False,
                   soft_wrap=True)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        _out.print("No model versions yet; `flywheel train` registers the first one.")
        return
    metrics = sorted({row["metric"] for row in rows})
    table = Table(title=f"Model {project.registry().model_name} ({', '.join(metrics)})",
                  box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False)
    for heading in ("version", "aliases", "created (UTC)", "learner", "cv", "holdout", "data"):
        table.add_column(heading, no_wrap=True)
    for row in rows:
        table.add_row(row["version"], ", ".join(row["aliases"]),
                      row["created"][:16].replace("T", " "), row["learner"],
                      _short(row["cv"]), _short(row["holdout"]), row["data"][7:15])
    _out.print(table)
    for row in rows:
        if "recovered" in row:
            _out.print(f"[yellow]version {row['version']}:[/yellow] "
                       f"{escape(str(row['recovered']))}", highlight=False, soft_wrap=True)


def _short(value: str) -> str:
    try:
        return f"{float(value):.4f}"
    except ValueError:
        return value
