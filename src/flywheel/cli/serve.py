"""`flywheel serve` (the prediction service) and `flywheel predict` (batch scoring)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flywheel.core.errors import ModelNotFoundError
from flywheel.core.spec import SPEC_FILE
from flywheel.pipelines import Project

_out = Console()
_err = Console(stderr=True)
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to flywheel.yaml.")]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("predict")(predict)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes.")] = 1,
    poll_interval: Annotated[float, typer.Option(
        min=0.1, help="Seconds between checks of the registry's aliases (hot swap).")] = 2.0,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Serve the champion (and challenger) over HTTP: /predict, Open Inference Protocol v2,
    /feedback, /metrics, /healthz, /readyz, /openapi.json."""
    # Imported here: uvicorn and the serving stage (MLflow, LightGBM) take seconds to import,
    # which `flywheel validate` and friends should not pay.
    import uvicorn

    from flywheel.pipelines.serve import CONFIG_ENV, admin_token

    project = Project.load(config)
    registry = project.registry()
    if registry.alias_version("champion") is None:
        raise ModelNotFoundError(registry.model_name, "champion")
    spec_path = config / SPEC_FILE if config.is_dir() else config
    os.environ[CONFIG_ENV] = str(spec_path.resolve())
    os.environ["FLYWHEEL_POLL_INTERVAL"] = str(poll_interval)
    os.environ.setdefault("FLYWHEEL_ADMIN_TOKEN", admin_token(project))
    if workers > 1:
        metrics_dir = project.workspace.root / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    _err.print(f"Serving model {registry.model_name!r} (champion: version "
               f"{registry.alias_version('champion')}) on http://{host}:{port} with {workers} "
               f"worker(s); admin token in {project.workspace.root / 'serve.token'}",
               highlight=False)
    uvicorn.run("flywheel.pipelines.serve:create_app", factory=True, host=host, port=port,
                workers=workers, log_level="warning", access_log=False, lifespan="on",
                timeout_graceful_shutdown=10)


def predict(
    source: Annotated[Path, typer.Argument(help="CSV or Parquet file to score.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the scores "
                                                                "(.csv or .parquet).")],
    model: Annotated[str, typer.Option(help="Alias or version to score with.")] = "champion",
    chunk_rows: Annotated[int, typer.Option(min=1, help="Rows per chunk.")] = 50_000,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Score a file in chunks with a registered model, with a progress bar."""
    from flywheel.pipelines.predict import check_paths, predict_file  # slow imports; see serve

    project = Project.load(config)
    total = check_paths(source, output)  # bad arguments fail before the progress bar starts
    with Progress(TextColumn("[bold]Scoring"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("rows"), TimeElapsedColumn(), console=_out) as progress:
        task = progress.add_task("score", total=total)
        result = predict_file(project, source, output, model=model, chunk_rows=chunk_rows,
                              on_chunk=lambda n: progress.advance(task, n))
    _out.print(f"[green]✓[/green] scored {result['rows']:,} rows with version "
               f"{result['version']} → {result['output']}")
