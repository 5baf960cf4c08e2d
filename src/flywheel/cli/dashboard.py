"""`flywheel dashboard`: the live dashboard of a workspace that no server serves."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flywheel.core.spec import SPEC_FILE
from flywheel.pipelines import Project

_err = Console(stderr=True)
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to flywheel.yaml.")]
TOKEN_ENV = "FLYWHEEL_ADMIN_TOKEN"


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)


def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8001,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the dashboard's document once (what /dashboard.json answers) "
                       "and exit.")] = False,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Serve /dashboard (read-only) for this workspace without a prediction server: versions
    and aliases, the rollout, latency and errors from the prediction log, drift from the last
    monitoring run, the loop's decisions; behind $FLYWHEEL_ADMIN_TOKEN when it is set."""
    # Imported here: the registry (MLflow) takes seconds to import, which --help should not pay.
    from flywheel.pipelines.dashboard import dashboard_data

    project = Project.load(config)
    if as_json:
        typer.echo(json.dumps(dashboard_data(project), indent=2))
        return
    import uvicorn

    from flywheel.serving import DashboardApp, DashboardRoutes

    token = os.environ.get(TOKEN_ENV, "")
    routes = DashboardRoutes(lambda served: dashboard_data(project, served=served),
                             tokens=[token] if token else [], max_age=1.0)
    where = f"http://{host}:{port}/dashboard" + ("?token=<$FLYWHEEL_ADMIN_TOKEN>" if token
                                                 else "")
    _err.print(f"Dashboard of model {project.registry().model_name!r} at {where} (Ctrl-C "
               "stops it)", highlight=False)
    uvicorn.run(DashboardApp(routes), host=host, port=port, log_level="warning",
                access_log=False, lifespan="on")
