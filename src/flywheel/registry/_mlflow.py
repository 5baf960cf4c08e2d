"""MLflow tracking and model registry behind the few calls flywheel makes.

Every call goes through an explicit ``MlflowClient`` for this registry's tracking URI: nothing
reads or changes MLflow's process-global tracking URI, experiment or active run, so two
registries (or a registry and a user's own MLflow code) do not interfere.

The class is composed of one part per idea: reaching MLflow (``_connection``: the client,
retries, error translation), tracking (``_tracking``: runs, trials, data sets, metrics,
artifacts, monitoring runs) and the model registry (``_model_registry``: logging, registering,
aliases, tags, versions, loading).
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from flywheel.registry._connection import sqlite_path
from flywheel.registry._model_registry import _ModelRegistry
from flywheel.registry._server import ServerLimits, is_server_uri
from flywheel.registry._tracking import _Tracking

if TYPE_CHECKING:
    from flywheel.core.spec import ProjectSpec
    from flywheel.core.workspace import Workspace

__all__ = ["MlflowRegistry"]


class MlflowRegistry(_Tracking, _ModelRegistry):
    """Runs, trials, datasets, models and registered versions of one project in MLflow.

    Args:
        tracking_uri: MLflow tracking (and registry) URI, such as ``sqlite:////abs/mlflow.db``,
            ``http://host:5000`` or ``postgresql://user:${PW_VAR}@host/db`` (``${VAR}`` expands
            from the environment when the client is made).
        artifact_location: Where a newly created experiment stores artifacts; ``None`` lets
            MLflow choose. An existing experiment keeps its own.
        experiment: The experiment runs go to; created on first use.
        model_name: The registered model versions go to; created on first registration.
        limits: How long to wait for, and how often to retry, a tracking server reached over
            HTTP(S); its reachability is checked before the first call.
    """

    @classmethod
    def for_project(cls, spec: ProjectSpec, workspace: Workspace) -> MlflowRegistry:
        """The registry a project's spec asks for, by default SQLite inside ``.flywheel/``.

        Relative paths in ``tracking.tracking_uri`` (``sqlite:///rel.db``) and
        ``tracking.artifact_location`` resolve against the folder holding flywheel.yaml. Without
        an artifact location, a tracking server keeps artifacts where it is configured to (its
        proxied store); any other store in ``.flywheel/artifacts``.
        """
        tracking = spec.tracking
        uri = tracking.tracking_uri or f"sqlite:///{workspace.mlflow_db}"
        path = sqlite_path(uri)
        if path is not None and not Path(path).is_absolute():
            uri = f"sqlite:///{spec.resolve(path)}"
        location = tracking.artifact_location
        if location is None and not is_server_uri(uri):
            location = workspace.artifacts.as_uri()
        elif location is not None and not urllib.parse.urlparse(location).scheme:
            location = spec.resolve(location).as_uri()
        limits = ServerLimits(connect_timeout_s=tracking.connect_timeout_seconds,
                              request_timeout_s=tracking.request_timeout_seconds,
                              retries=tracking.retries, backoff_s=tracking.backoff_seconds,
                              pool_size=tracking.pool_size, max_overflow=tracking.max_overflow)
        return cls(uri, artifact_location=location,
                   experiment=tracking.experiment or spec.name,
                   model_name=tracking.model_name or spec.name, limits=limits)

    def __repr__(self) -> str:
        return (f"MlflowRegistry({self.display_uri!r}, experiment={self.experiment!r}, "
                f"model_name={self.model_name!r})")
