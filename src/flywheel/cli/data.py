"""Data commands: init, validate, profile."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flywheel.core.spec import SPEC_FILE, Task
from flywheel.data import DataSchema, ValidationReport
from flywheel.pipelines import Project

_out = Console()

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to flywheel.yaml.")]


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("validate")(validate)
    app.command("profile")(profile)


def init(
    data: Annotated[Path, typer.Argument(help="Training data, CSV or Parquet.")],
    target: Annotated[str, typer.Option("--target", "-t", help="The column to predict.")],
    task: Annotated[str | None, typer.Option(
        help="binary, multiclass or regression; inferred when omitted.")] = None,
    directory: Annotated[Path, typer.Option("--dir", help="Project folder.")] = Path("."),
    name: Annotated[str | None, typer.Option(help="Project name.")] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of a CSV file.")] = "utf-8",
    force: Annotated[bool, typer.Option(help="Overwrite an existing spec and schema.")] = False,
) -> None:
    """Infer a schema from DATA and write flywheel.yaml and schema.yaml."""
    if task is not None and task not in ("binary", "multiclass", "regression"):
        raise typer.BadParameter(f"must be binary, multiclass or regression, got {task!r}",
                                 param_hint="--task")
    with _out.status("Reading the data and inferring the schema..."):
        project = Project.init(data, target, directory=directory, task=_task(task), name=name,
                               encoding=encoding, force=force)
    _print_schema(project.schema)
    spec = project.spec
    _out.print(f"[green]✓[/green] task [bold]{spec.target.task}[/bold]"
               + (f", positive class {spec.target.positive_class!r}"
                  if spec.target.positive_class else "")
               + f"; wrote {spec.root / SPEC_FILE} and {spec.schema_path}")
    _out.print("Next: review schema.yaml, then run `flywheel validate`.")


def _task(task: str | None) -> Task | None:
    return task  # type: ignore[return-value]  # checked above


def validate(
    data: Annotated[Path | None, typer.Argument(
        help="Data to check; the spec's training data when omitted.")] = None,
    config: ConfigOption = Path(SPEC_FILE),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    no_target: Annotated[bool, typer.Option(
        "--no-target", help="The data has no labels (production traffic).")] = False,
) -> None:
    """Check data against the schema. Exit 0 if it passes, 1 if any error-level check fails."""
    project = Project.load(config)
    report = project.validate(data, require_target=not no_target)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def profile(
    data: Annotated[Path | None, typer.Argument(
        help="Data to profile; the spec's training data when omitted.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                   help="Write the profile JSON here.")] = None,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Compute the reference profile (quantile bins, category counts, null rates) of data."""
    result = Project.load(config).profile(data)
    if output is None:
        typer.echo(result.to_json())
        return
    result.save(output)
    _out.print(f"[green]✓[/green] profile of {result.rows:,} rows, {len(result.columns)} columns "
               f"({result.fingerprint[:19]}…) written to {output}")


def _print_schema(schema: DataSchema) -> None:
    table = Table(title=f"Schema: {schema.rows:,} rows, {len(schema.columns)} columns")
    for heading in ("column", "kind", "role", "nulls", "values"):
        table.add_column(heading, overflow="fold")
    for name, col in schema.columns.items():
        if col.categories is not None:
            values = f"{len(col.categories)} categories"
        elif col.min is not None and col.kind == "datetime":
            values = f"{_date(col.min)} … {_date(col.max)}"
        elif col.min is not None:
            values = f"[{col.min:g}, {col.max:g}]"
        else:
            values = f"{col.cardinality} distinct (open)"
        style = "yellow" if col.role not in ("feature", "target") else None
        table.add_row(name, col.kind, col.role, f"{col.null_rate:.1%}", values, style=style)
    _out.print(table)
    for name, col in schema.excluded_columns.items():
        _out.print(f"[yellow]left out[/yellow] {name}: {col.role}, {col.reason}")
    for name, col in schema.columns.items():
        if col.is_feature and col.reason:  # kept, but it may be computed from the target
            _out.print(f"[yellow]check[/yellow] {name}: {col.reason}", highlight=False)


def _date(epoch_seconds: float | None) -> str:
    return dt.datetime.fromtimestamp(epoch_seconds or 0, dt.UTC).strftime("%Y-%m-%d")


def _print_report(report: ValidationReport) -> None:
    where = f"{report.source}: " if report.source else ""
    shape = f"{report.rows:,} rows × {report.columns} columns"
    if not report.failures:
        _out.print(f"[green]✓[/green] {where}all checks passed ({shape})")
        return
    # A report with only warnings passes: its table must not be titled as failures.
    title = "Failed checks" if not report.ok else "Warnings"
    table = Table(title=f"{title} in {report.source or 'the data'} ({shape})")
    table.add_column("", no_wrap=True)
    # Names fold rather than end in an ellipsis: a cut name cannot be found in the data.
    table.add_column("column", overflow="fold")
    table.add_column("check", overflow="fold")
    table.add_column("detail", ratio=3)
    table.add_column("examples", ratio=1, overflow="fold")
    for f in report.failures:
        mark = "[red]error[/red]" if f.severity == "error" else "[yellow]warn[/yellow]"
        table.add_row(mark, f.where, f.check, f.detail, ", ".join(f.examples))
    _out.print(table)
    mark = "[red]✗[/red]" if not report.ok else "[yellow]![/yellow]"
    verdict = "fails validation" if not report.ok else "passes with warnings"
    _out.print(f"{mark} {where}{verdict}: {len(report.errors)} error(s), "
               f"{len(report.warnings)} warning(s)")
