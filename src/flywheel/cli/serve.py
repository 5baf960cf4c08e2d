"""`flywheel serve` (the prediction service) and `flywheel predict` (batch scoring)."""

from __future__ import annotations

import enum
import os
import shutil
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flywheel.core.errors import ConfigError, ModelNotFoundError, ServingError
from flywheel.core.openmp import share_cores
from flywheel.core.spec import SPEC_FILE
from flywheel.pipelines import Project

_out = Console()
_err = Console(stderr=True)
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to flywheel.yaml.")]


class Engine(enum.StrEnum):
    """Where `flywheel predict` scores."""

    local = "local"
    ray = "ray"


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("predict")(predict)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes.")] = 1,
    poll_interval: Annotated[float, typer.Option(
        min=0.1, help="Seconds between checks of the registry's aliases (hot swap).")] = 2.0,
    grpc_port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="Also serve the Open Inference Protocol v2 over gRPC on this "
        "port (pip install flywheel[grpc]); default: serving.grpc_port.")] = None,
    ssl_certfile: Annotated[Path | None, typer.Option(
        help="PEM certificate (chain): serve HTTPS; default: serving.ssl_certfile.")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(
        help="The certificate's PEM private key; default: serving.ssl_keyfile.")] = None,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Serve the champion (and challenger) over HTTP(S): /predict, Open Inference Protocol v2,
    /feedback, /dashboard, /metrics, /healthz, /readyz, /openapi.json; and over gRPC with
    --grpc-port."""
    share_cores()  # before the imports below load the OpenMP runtime
    # Imported here: uvicorn and the serving stage (MLflow, LightGBM) take seconds to import,
    # which `flywheel validate` and friends should not pay.
    import uvicorn

    from flywheel.pipelines.serve import CONFIG_ENV, GRPC_ENV, admin_token, api_tokens

    project = Project.load(config)
    api_tokens(project)  # serving.auth without its tokens fails here, not in each worker
    tls = tls_files(project, ssl_certfile, ssl_keyfile)
    if grpc_port is None:
        grpc_port = project.spec.serving.grpc_port
    if grpc_port is not None:
        os.environ[GRPC_ENV] = check_grpc_port(host, port, grpc_port)
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
    scheme = "http" if tls is None else "https"
    _err.print(f"Serving model {registry.model_name!r} (champion: version "
               f"{registry.alias_version('champion')}) on {scheme}://{host}:{port}"
               + (f" and gRPC {host}:{grpc_port}" if grpc_port is not None else "")
               + f" with {workers} worker(s); admin token in "
                 f"{project.workspace.root / 'serve.token'}; dashboard at "
                 f"{scheme}://{host}:{port}/dashboard?token=<admin token>",
               highlight=False)
    uvicorn.run("flywheel.pipelines.serve:create_app", factory=True, host=host, port=port,
                workers=workers, log_level="warning", access_log=False, lifespan="on",
                timeout_graceful_shutdown=10,
                ssl_certfile=None if tls is None else str(tls[0]),
                ssl_keyfile=None if tls is None else str(tls[1]))


def tls_files(project: Project, certfile: Path | None, keyfile: Path | None
              ) -> tuple[Path, Path] | None:
    """The certificate and key to serve HTTPS with (flags over ``serving.ssl_*``), checked to
    load; None: plain HTTP.

    Raises:
        ConfigError: If only one of the two is given, or they do not load as a PEM
            certificate and its key.
    """
    spec = project.spec.serving
    if certfile is None and keyfile is None and spec.ssl_certfile and spec.ssl_keyfile:
        certfile, keyfile = project.spec.resolve(spec.ssl_certfile), \
            project.spec.resolve(spec.ssl_keyfile)
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise ConfigError("--ssl-certfile and --ssl-keyfile go together: give both (a PEM "
                          "certificate and its private key) or neither")
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot serve HTTPS with certificate {certfile} and key {keyfile}: "
                          f"{exc}; expected a PEM certificate and its unencrypted PEM key "
                          "(openssl req -x509 -newkey rsa:2048 -nodes ... makes a pair)"
                          ) from None
    return certfile, keyfile


def check_grpc_port(host: str, port: int, grpc_port: int) -> str:
    """The gRPC address ``host:grpc_port``, once grpcio is importable and the port is free.

    Raises:
        ServingError: If the grpc extra is missing, or the port is the HTTP one or taken.
    """
    if grpc_port == port:
        raise ServingError(f"--grpc-port {grpc_port} is also the HTTP --port; give gRPC a port "
                           "of its own")
    try:
        import grpc  # noqa: F401 - only whether the extra is installed
        import grpc_health.v1  # noqa: F401
        import grpc_reflection.v1alpha  # noqa: F401
    except ImportError as exc:
        raise ServingError(f"--grpc-port needs grpcio, which is not installed ({exc}); "
                           "pip install flywheel[grpc]") from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, grpc_port))
        except OSError as exc:
            raise ServingError(f"gRPC cannot listen on {host}:{grpc_port}: {exc.strerror}; "
                               "expected a free port; choose another --grpc-port") from None
    return f"[{host}]:{grpc_port}" if family == socket.AF_INET6 else f"{host}:{grpc_port}"


def predict(
    source: Annotated[str, typer.Argument(help="CSV or Parquet file to score; with --engine "
                                               "ray also a folder, a glob or an s3:// URI.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Where to write the scores "
                                                               "(.csv or .parquet; with "
                                                               "--engine ray .parquet, a "
                                                               "folder or a URI).")],
    model: Annotated[str, typer.Option(help="Alias or version to score with.")] = "champion",
    chunk_rows: Annotated[int, typer.Option(min=1, help="Rows per chunk.")] = 50_000,
    engine: Annotated[Engine, typer.Option(help="local: in this process; ray: Ray Data "
                                                "map_batches (pip install flywheel[ray]).")
                      ] = Engine.local,
    ray_address: Annotated[str | None, typer.Option(
        help="--engine ray: auto, HOST:PORT or ray://HOST:PORT of a cluster; unset starts a "
             "local Ray.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=256, help="--engine ray: scoring actors, "
                                                              "one CPU each.")] = 2,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Score a file in chunks with a registered model, with a progress bar."""
    from flywheel.pipelines.predict import (  # slow imports; see serve
        check_paths,
        count_rows,
        predict_file,
        predict_with_ray,
        resolve_inputs,
    )

    project = Project.load(config)
    # bad arguments fail before the progress bar starts
    if engine is Engine.ray:
        paths, fmt = resolve_inputs(source)
        local = fmt == "parquet" and all("://" not in p for p in paths)
        total = sum(count_rows(Path(p)) or 0 for p in paths) if local else None
    else:
        total = check_paths(Path(source), Path(output))
    with Progress(TextColumn("[bold]Scoring"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("rows"), TimeElapsedColumn(), console=_out) as progress:
        task = progress.add_task("score", total=total)
        if engine is Engine.ray:
            result = predict_with_ray(project, source, output, model=model,
                                      chunk_rows=chunk_rows, address=ray_address,
                                      workers=workers,
                                      on_chunk=lambda n: progress.advance(task, n))
        else:
            result = predict_file(project, source, output, model=model, chunk_rows=chunk_rows,
                                  on_chunk=lambda n: progress.advance(task, n))
    _out.print(f"[green]✓[/green] scored {result['rows']:,} rows with version "
               f"{result['version']} ({result['form']}, {engine.value} engine) → "
               f"{result['output']}")
