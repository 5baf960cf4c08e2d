"""`flywheel stream`: score events from a Redis stream through the serving model store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flywheel.core.openmp import share_cores
from flywheel.core.spec import SPEC_FILE

_err = Console(stderr=True)
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to flywheel.yaml.")]


def register(app: typer.Typer) -> None:
    app.command("stream")(stream)


def stream(
    source: Annotated[str, typer.Option(help="The stream to read: redis://HOST:PORT/STREAM.")],
    group: Annotated[str, typer.Option(help="Consumer group (created at the stream's start "
                                            "if missing).")],
    output: Annotated[str | None, typer.Option(
        help="Where predictions go: redis://HOST:PORT/STREAM on the source's server, or a "
             "folder of Parquet files; default the stream STREAM:predictions.")] = None,
    consumer: Annotated[str | None, typer.Option(
        help="This process's name in the group; default HOST-PID.")] = None,
    dead_letter: Annotated[str | None, typer.Option(
        help="Stream for events that cannot be scored; default STREAM:dead.")] = None,
    batch: Annotated[int, typer.Option(min=1, max=10_000,
                                       help="Most events per micro-batch.")] = 500,
    block_ms: Annotated[int, typer.Option(min=1, help="How long a read waits for "
                                                      "events.")] = 100,
    claim_idle_ms: Annotated[int, typer.Option(
        min=0, help="Take over events pending this long at another (dead) consumer, "
                    "on start and then as often.")] = 30_000,
    metrics_port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="Serve Prometheus metrics on this port.")] = None,
    metrics_host: Annotated[str, typer.Option(help="Address for the metrics.")] = "127.0.0.1",
    poll_interval: Annotated[float, typer.Option(
        min=0.1, help="Seconds between checks of the registry (hot swap).")] = 2.0,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Score a Redis stream with the champion (rollouts apply), one prediction per event id.

    An event carries its record as JSON in the field `record`; one that does not parse or
    fails the input checks goes to the dead-letter stream with the reason. Events are
    acknowledged only once their prediction is written. Stops on SIGTERM or Ctrl-C.
    """
    share_cores()  # a scoring process, like a server
    # Imported here: the serving stage (MLflow, LightGBM) takes seconds to import.
    from flywheel.core.uris import install_redaction
    from flywheel.pipelines import Project
    from flywheel.pipelines.stream import StreamOptions, run_stream

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    install_redaction("mlflow")
    project = Project.load(config)
    options = StreamOptions(source=source, group=group, output=output, consumer=consumer,
                            dead_letter=dead_letter, batch=batch, block_ms=block_ms,
                            claim_idle_ms=claim_idle_ms, metrics_port=metrics_port,
                            metrics_host=metrics_host, poll_interval=poll_interval)
    settled = run_stream(project, options)
    _err.print(f"stopped after {settled:,} events", highlight=False)
