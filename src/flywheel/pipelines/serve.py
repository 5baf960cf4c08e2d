"""Putting the serving stage together for a project: registry, models, log, app."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from flywheel.core.errors import ConfigError
from flywheel.core.uris import install_redaction
from flywheel.core.workspace import atomic_write_text
from flywheel.featurestore import FeatureStore
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines._predlog import log_location, spool_folder
from flywheel.pipelines.dashboard import dashboard_data
from flywheel.pipelines.rollout import RolloutDriver
from flywheel.serving import DashboardRoutes, ModelStore, PredictionLog, ServingApp, TokenCheck

CONFIG_ENV = "FLYWHEEL_CONFIG"
TOKEN_ENV = "FLYWHEEL_ADMIN_TOKEN"
GRPC_ENV = "FLYWHEEL_GRPC_ADDRESS"
ALIASES_ENV = "FLYWHEEL_SERVE_ALIASES"
"""Comma-separated aliases to serve, the first answering by default (KServe's canary pods
serve ``challenger`` alone; the traffic split is KServe's, so no rollout decides here)."""


def build_app(project: ProjectContext, *, poll_interval: float = 2.0, log_predictions: bool = True,
              flush_interval: float = 1.0, decide: bool | None = None,
              grpc_address: str | None = None,
              aliases: tuple[str, ...] = ("champion", "challenger")) -> ServingApp:
    """The prediction service for ``project``'s registered model (champion and challenger).

    Args:
        decide: Run the rollout controller in this process (one worker of several drives it,
            chosen by a workspace lock); defaults to the spec's ``rollout.auto``.
        aliases: The aliases to serve; the first answers requests that name no model.
        grpc_address: ``HOST:PORT`` to serve the Open Inference Protocol over gRPC on, beside
            HTTP (None: HTTP only; grpcio is not imported).
    """
    project.workspace.ensure()
    features = FeatureStore(project.spec, project.workspace) \
        if project.spec.feature_store.views else None
    store = ModelStore(project.registry(), aliases=aliases, poll_interval=poll_interval,
                       features=features,
                       allow_pickle=project.spec.training.allow_pickle,
                       runtime=project.spec.serving.runtime)
    prediction_log = PredictionLog(log_location(project), spool=spool_folder(project),
                                   flush_interval=flush_interval) \
        if log_predictions else None
    auto = project.spec.rollout.auto if decide is None else decide
    background = (RolloutDriver(project),) if auto and log_predictions else ()
    admin = admin_token(project)
    auth = api_tokens(project)
    dashboard = DashboardRoutes(
        lambda served: dashboard_data(project, served=served),
        tokens=[admin, *(auth.tokens_text if auth and auth.guards("dashboard") else ())])
    return ServingApp(store, prediction_log=prediction_log, admin_token=admin,
                      background=background, grpc_address=grpc_address, dashboard=dashboard,
                      auth=auth, client_limit=project.spec.serving.max_concurrent_per_client)


def api_tokens(project: ProjectContext) -> TokenCheck | None:
    """The API tokens of ``serving.auth`` (None when it guards no endpoint).

    Raises:
        ConfigError: If it guards endpoints but its environment variable holds no token.
    """
    spec = project.spec.serving.auth
    if not spec.endpoints:
        return None
    tokens = [t.strip() for t in os.environ.get(spec.token_env, "").split(",") if t.strip()]
    if not tokens:
        raise ConfigError(f"serving.auth guards {', '.join(spec.endpoints)} but ${spec.token_env}"
                          " holds no token; set it to one or more tokens, comma-separated "
                          "(or empty serving.auth.endpoints to leave them open)")
    return TokenCheck(tokens, spec.endpoints)


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
    install_redaction("mlflow", "uvicorn", "uvicorn.error")
    project = ProjectContext.load(os.environ.get(CONFIG_ENV, "flywheel.yaml"))
    poll = float(os.environ.get("FLYWHEEL_POLL_INTERVAL", "2"))
    # Seconds between prediction-log writes: what a SIGKILL can lose (default 1).
    flush = float(os.environ.get("FLYWHEEL_LOG_FLUSH_SECONDS", "1"))
    pinned = tuple(a.strip() for a in os.environ.get(ALIASES_ENV, "").split(",") if a.strip())
    return build_app(project, poll_interval=poll, flush_interval=flush,
                     grpc_address=os.environ.get(GRPC_ENV) or None,
                     aliases=pinned or ("champion", "challenger"),
                     decide=False if pinned else None)
