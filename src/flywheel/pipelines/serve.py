"""Putting the serving stage together for a project: registry, models, log, app."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from flywheel.core.workspace import atomic_write_text
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines.rollout import RolloutDriver
from flywheel.serving import ModelStore, PredictionLog, ServingApp

CONFIG_ENV = "FLYWHEEL_CONFIG"
TOKEN_ENV = "FLYWHEEL_ADMIN_TOKEN"


def build_app(project: ProjectContext, *, poll_interval: float = 2.0, log_predictions: bool = True,
              flush_interval: float = 1.0, decide: bool | None = None) -> ServingApp:
    """The prediction service for ``project``'s registered model (champion and challenger).

    Args:
        decide: Run the rollout controller in this process (one worker of several drives it,
            chosen by a workspace lock); defaults to the spec's ``rollout.auto``.
    """
    workspace = project.workspace.ensure()
    store = ModelStore(project.registry(), poll_interval=poll_interval,
                       allow_pickle=project.spec.training.allow_pickle)
    prediction_log = PredictionLog(workspace.predictions, flush_interval=flush_interval) \
        if log_predictions else None
    auto = project.spec.rollout.auto if decide is None else decide
    background = (RolloutDriver(project),) if auto and log_predictions else ()
    return ServingApp(store, prediction_log=prediction_log, admin_token=admin_token(project),
                      background=background)


def admin_token(project: ProjectContext) -> str:
    """The token admin endpoints require: $FLYWHEEL_ADMIN_TOKEN, else one kept in the workspace
    (created on first use, readable only by its owner)."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    path = Path(project.workspace.root) / "serve.token"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    token = secrets.token_urlsafe(24)
    atomic_write_text(path, token + "\n")
    path.chmod(0o600)
    return token


def create_app() -> ServingApp:
    """Factory for uvicorn workers: the project comes from $FLYWHEEL_CONFIG."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    project = ProjectContext.load(os.environ.get(CONFIG_ENV, "flywheel.yaml"))
    poll = float(os.environ.get("FLYWHEEL_POLL_INTERVAL", "2"))
    # Seconds between prediction-log writes: what a SIGKILL can lose (default 1).
    flush = float(os.environ.get("FLYWHEEL_LOG_FLUSH_SECONDS", "1"))
    return build_app(project, poll_interval=poll, flush_interval=flush)
