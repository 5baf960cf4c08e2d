"""`flywheel features`: the feature views, their versions, materialization and online values.

These commands read flywheel.yaml and the workspace only (no tracking store, no MLflow).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flywheel.core.errors import ConfigError
from flywheel.core.spec import SPEC_FILE, load_spec
from flywheel.core.timeparse import parse_iso_time
from flywheel.core.workspace import Workspace
from flywheel.data import load_table
from flywheel.featurestore import FeatureStore

_out = Console()
_err = Console(stderr=True)
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to flywheel.yaml.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]

features_app = typer.Typer(
    name="features",
    help="Feature views: list, show, materialize to the online store, get online values.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(features_app, name="features")


def _store(config: Path) -> FeatureStore:
    spec = load_spec(config)
    return FeatureStore(spec, Workspace(spec.root))


def _ttl(seconds: float | None) -> str:
    if seconds is None:
        return "forever"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@features_app.command("list")
def list_views(config: ConfigOption = Path(SPEC_FILE), as_json: JsonOption = False) -> None:
    """The feature views of flywheel.yaml with their current versions."""
    store = _store(config)
    rows: list[dict[str, Any]] = []
    for name in store.catalog.names():
        view = store.catalog.resolve(name)
        rows.append({"name": name, "version": view.version, "entities": view.spec.entities,
                     "event_time": view.spec.event_time, "ttl": view.spec.ttl,
                     "features": view.spec.features,
                     "source": view.spec.source or view.spec.query})
    store.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        _out.print("No feature views; define them under feature_store.views in flywheel.yaml.")
        return
    table = Table(title=f"Feature views ({store.spec.feature_store.online} online store)",
                  box=box.SIMPLE_HEAD, show_edge=False)
    for heading in ("view", "version", "entities", "event time", "ttl", "features", "source"):
        table.add_column(heading)
    for row in rows:
        table.add_row(row["name"], str(row["version"]), ", ".join(row["entities"]),
                      row["event_time"], _ttl(row["ttl"]), str(len(row["features"])),
                      escape(str(row["source"])))
    _out.print(table)


@features_app.command("show")
def show(name: Annotated[str, typer.Argument(help="The view's name.")],
         config: ConfigOption = Path(SPEC_FILE), as_json: JsonOption = False) -> None:
    """One view: its columns and types, and every version registered."""
    store = _store(config)
    view = store.catalog.resolve(name)
    history = store.catalog.history(name)
    store.close()
    if as_json:
        typer.echo(json.dumps({"name": name, "version": view.version, "digest": view.digest,
                               "definition": view.spec.model_dump(mode="json"),
                               "types": view.types, "versions": history}, indent=2))
        return
    spec = view.spec
    _out.print(f"[bold]{name}[/bold] version {view.version} ({view.digest[7:19]}), keyed by "
               f"{', '.join(spec.entities)} at {spec.event_time}"
               + (f", ties by {spec.created_time}" if spec.created_time else "")
               + f", ttl {_ttl(spec.ttl)}", highlight=False)
    _out.print(f"source: {escape(str(spec.source or spec.query))}", highlight=False)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("column")
    table.add_column("role")
    table.add_column("type")
    roles = {**{k: "entity" for k in spec.entities}, spec.event_time: "event time",
             **({spec.created_time: "created time"} if spec.created_time else {})}
    for column in spec.columns:
        table.add_row(column, roles.get(column, "feature"), view.types[column])
    _out.print(table)
    versions = Table(title="versions", box=box.SIMPLE_HEAD, show_edge=False)
    for heading in ("version", "registered (UTC)", "digest", "features"):
        versions.add_column(heading)
    for entry in history:
        versions.add_row(str(entry["version"]), entry["registered"][:16].replace("T", " "),
                         entry["digest"][7:19], str(len(entry["definition"]["features"])))
    _out.print(versions)


def _when(text: str | None, option: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        return parse_iso_time(text)
    except ValueError as exc:
        raise ConfigError(f"{option}: {text!r} is not an ISO time such as 2013-06-01 or "
                          "2013-06-01T12:00Z.") from exc


@features_app.command("materialize")
def materialize(
    views: Annotated[list[str] | None, typer.Argument(help="Views to materialize (default: "
                                                           "all).")] = None,
    start: Annotated[str | None, typer.Option(help="Window start, ISO (default: where the "
                                                   "last run ended).")] = None,
    end: Annotated[str | None, typer.Option(help="Window end, ISO, exclusive (default: "
                                                 "now).")] = None,
    config: ConfigOption = Path(SPEC_FILE),
    as_json: JsonOption = False,
) -> None:
    """Write the latest values per entity to the online store, slice by slice (a killed run
    resumes where it stopped)."""
    store = _store(config)
    begin, finish = _when(start, "--start"), _when(end, "--end")

    def progress(name: str, chunk: int, total: int) -> None:
        if not as_json:
            _err.print(f"  {name}: slice {chunk + 1}/{total} written", highlight=False)

    results = store.materialize(views or None, start=begin, end=finish, on_chunk=progress)
    where = store.online.where
    store.close()
    rows: list[dict[str, Any]] = [{
        "view": r.view, "version": r.version,
        "start": r.start.isoformat() if r.start else None, "end": r.end.isoformat(),
        "chunks": r.chunks, "resumed_chunks": r.resumed, "rows": r.rows,
        "seconds": round(r.seconds, 3)} for r in results]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Materialized into {escape(where)}", box=box.SIMPLE_HEAD,
                  show_edge=False)
    for heading in ("view", "version", "window", "slices", "resumed", "entities written", "s"):
        table.add_column(heading)
    for row in rows:
        table.add_row(row["view"], str(row["version"]),
                      f"{row['start'] or 'beginning'} .. {row['end']}", str(row["chunks"]),
                      str(row["resumed_chunks"]), f"{row['rows']:,}", f"{row['seconds']:.1f}")
    _out.print(table)


@features_app.command("get")
def get(
    entities: Annotated[list[str], typer.Argument(help="The entity's key value(s), in the "
                                                       "view's key order.")],
    view: Annotated[list[str] | None, typer.Option("--view", "-v", help="Only these views "
                                                                        "(repeat).")] = None,
    config: ConfigOption = Path(SPEC_FILE),
    as_json: JsonOption = False,
) -> None:
    """The online values of one entity, per view."""
    store = _store(config)
    chosen = view or [n for n in store.catalog.names()
                      if len(store.catalog.view_spec(n).entities) == len(entities)]
    if not chosen:
        raise ConfigError(f"no feature view is keyed by {len(entities)} column(s); "
                          "`flywheel features list` shows the views' keys.")
    found = store.get(entities, views=chosen)
    store.close()
    if as_json:
        typer.echo(json.dumps(found, indent=2, default=str))
        return
    for name, values in found.items():
        if values is None:
            _out.print(f"[yellow]{name}[/yellow]: no values for {escape(repr(entities))} in "
                       "the online store (materialize it, or the entity is unknown)",
                       highlight=False)
            continue
        table = Table(title=name, box=box.SIMPLE_HEAD, show_edge=False)
        table.add_column("feature")
        table.add_column("value")
        for feature, value in values.items():
            table.add_row(feature, escape(repr(value)))
        _out.print(table)


@features_app.command("training-set")
def training_set(
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")],
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Write the point-in-time training set (the spine with its views joined) to a Parquet
    file: `flywheel init` on it writes a schema that covers the views' features."""
    store = _store(config)
    spec = store.spec
    spine = load_table(spec.data_path, fmt=spec.data.format, encoding=spec.data.encoding,
                       delimiter=spec.data.delimiter)
    frame, report, pins = store.training_set(spine)
    store.close()
    frame.to_parquet(output, index=False)
    matched = ", ".join(f"{name} {count:,}" for name, count in report.matched.items())
    _out.print(f"Wrote {report.rows:,} rows to {escape(str(output))}; rows matched per view: "
               f"{matched}; versions "
               + ", ".join(f"{n} v{p['version']}" for n, p in pins.items()), highlight=False)
