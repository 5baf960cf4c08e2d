"""What promotion and the model card need from the registry beyond its core interface:
removing an alias, tagging a version after registration, storing and fetching a folder of
run artifacts (the card's PNG plots are binary).

Functions over an :class:`MlflowRegistry`, using its client and its error handling, so that
MLflow stays behind the registry package.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.exceptions import MlflowException

from flywheel.core.errors import RegistryError
from flywheel.registry._promotion import promote

if TYPE_CHECKING:
    from flywheel.registry._mlflow import MlflowRegistry

__all__ = ["apply_alias_rules", "artifact_exists", "delete_alias", "delete_version_tags",
           "download_artifacts", "log_artifact_folder", "set_version_tags"]

_VERSION_TAG_LIMIT = 100_000


def delete_alias(registry: MlflowRegistry, alias: str) -> None:
    """Remove ``alias`` from whichever version holds it; nothing happens if none does."""
    def delete() -> None:
        try:
            registry._client.delete_registered_model_alias(registry.model_name, alias)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise

    registry._call(f"remove alias {alias!r}", delete)


def apply_alias_rules(registry: MlflowRegistry, version: str) -> None:
    """Give ``version`` the aliases registration gives a new version (champion if first,
    else challenger), as ``register`` does; recovery finishes an interrupted registration
    with it."""
    registry._call("set the model's aliases",
                   lambda: promote(registry._client, registry.model_name, version))


def set_version_tags(registry: MlflowRegistry, version: str,
                     tags: Mapping[str, str]) -> None:
    """Set tags on a registered version (values cut at MLflow's 100,000 characters)."""
    for key, value in tags.items():
        text = value if len(value) <= _VERSION_TAG_LIMIT else value[:_VERSION_TAG_LIMIT - 3] + "..."
        registry._call("tag the model version", functools.partial(
            registry._client.set_model_version_tag, registry.model_name, version, key, text))


def delete_version_tags(registry: MlflowRegistry, version: str, keys: list[str]) -> None:
    """Remove tags from a registered version (a tag already gone is no error)."""
    for key in keys:
        def delete(key: str = key) -> None:
            try:
                registry._client.delete_model_version_tag(registry.model_name, version, key)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise

        registry._call("remove a version tag", delete)


def log_artifact_folder(registry: MlflowRegistry, run_id: str, folder: str | Path,
                        artifact_path: str) -> None:
    """Store every file under ``folder`` as run artifacts under ``artifact_path``."""
    registry._call("store artifacts", lambda: registry._client.log_artifacts(
        run_id, str(folder), artifact_path))


def download_artifacts(registry: MlflowRegistry, run_id: str, artifact_path: str,
                       destination: str | Path) -> Path:
    """Fetch a run artifact (file or folder) into ``destination``; returns its local path.

    Raises:
        RegistryError: If the artifact does not exist or cannot be fetched.
    """
    Path(destination).mkdir(parents=True, exist_ok=True)
    try:
        local = registry._call(f"fetch artifact {artifact_path!r}", lambda: registry._client
                               .download_artifacts(run_id, artifact_path, str(destination)))
    except OSError as exc:
        raise RegistryError(f"cannot fetch artifact {artifact_path!r} of run {run_id} ({exc}); "
                            "the artifact store may be unavailable.") from exc
    return Path(local)


def artifact_exists(registry: MlflowRegistry, run_id: str, artifact_path: str) -> bool:
    """Whether the run has the artifact ``artifact_path`` (such as ``profile.json``).

    Raises:
        RegistryError: If the artifact store cannot be listed.
    """
    parent = artifact_path.rpartition("/")[0] or None
    try:
        found = registry._call("list artifacts", lambda: registry._client.list_artifacts(
            run_id, parent))
    except OSError as exc:
        raise RegistryError(f"cannot list the artifacts of run {run_id} ({exc}); the artifact "
                            "store may be unavailable.") from exc
    return any(item.path == artifact_path for item in found)
