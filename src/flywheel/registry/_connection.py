"""Reaching MLflow: the client, retries of store contention, and MLflow's errors as flywheel's.

Every call goes through an explicit ``MlflowClient`` for the registry's tracking URI, created on
first use (a client opens, and on first use migrates, the database). :meth:`_Connection._call`
retries contention and turns every ``MlflowException`` or ``OSError`` into a
:class:`~flywheel.core.errors.RegistryError`; nothing outside the registry class touches the
client. Also here: the one parser of ``sqlite:///`` URIs and the checks of a local store's path.

A URI is kept as written (``${VAR}`` unexpanded) and expanded from the environment only when
the client is made; messages show it with its password masked and error texts are redacted
(:mod:`flywheel.core.uris`). A database store (``postgresql://``) gets a bounded pool
(``tracking.pool_size``, ``max_overflow``) and one quick first connection
(:func:`flywheel.core.database.check_database`) before MLflow's engine, whose own retries of an
unreachable database take about 100 s.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from flywheel.core.database import check_database
from flywheel.core.errors import RegistryError, StoreUnreachableError, TrackingUnreachableError
from flywheel.core.uris import expand_env, is_database_uri, mask_uri, redact
from flywheel.registry._quiet import quiet_mlflow
from flywheel.registry._retry import retry_on_contention
from flywheel.registry._server import (
    ServerLimits,
    apply_limits,
    apply_pool,
    check_reachable,
    is_server_uri,
    lost_connection,
)

__all__ = ["TAG_LIMIT", "check_store_path", "cut", "sqlite_path", "tag_values"]

T = TypeVar("T")

_SQLITE = "sqlite:///"
# MLflow's limit on a run tag's value (mlflow.utils.validation): longer values are cut.
TAG_LIMIT = 8000


def sqlite_path(uri: str) -> str | None:
    """The database file of a ``sqlite:///`` URI as written (relative or absolute), or
    ``None`` for any other store, an in-memory database or an empty path."""
    if not uri.startswith(_SQLITE):
        return None
    path = uri.removeprefix(_SQLITE)
    return None if path in ("", ":memory:") else path


def check_store_path(uri: str) -> None:
    """Refuse a local SQLite store whose path MLflow cannot create.

    MLflow creates the database's folders itself and fails with ``FileExistsError`` or
    ``NotADirectoryError`` when a regular file stands where a folder should be.

    Raises:
        TrackingUnreachableError: If the path is a folder, or one of its folders is a file.
    """
    raw = sqlite_path(uri)
    if raw is None:
        return
    path = Path(raw)
    if path.is_dir():
        raise TrackingUnreachableError(
            uri, f"{path} is a folder, not a database file",
            hint="Point tracking.tracking_uri in flywheel.yaml at a file, such as "
                 f"sqlite:///{path / 'mlflow.db'}.")
    for folder in path.parents:
        if folder.exists():
            if not folder.is_dir():
                raise TrackingUnreachableError(
                    uri, f"{folder} is a regular file, not a folder",
                    hint="Point tracking.tracking_uri in flywheel.yaml at a path whose folders "
                         "are folders, or move that file away.")
            return


def tag_values(tags: Mapping[str, Any], *, limit: int = TAG_LIMIT) -> dict[str, str]:
    """``tags`` as strings, each value cut to ``limit`` characters."""
    return {str(k): cut(str(v), limit) for k, v in tags.items()}


def cut(text: str, limit: int) -> str:
    """``text``, or its first ``limit - 3`` characters and ``...`` if it is longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Connection:
    """The MLflow client of one registry and the error handling of every call through it.

    The arguments are :class:`~flywheel.registry.MlflowRegistry`'s, documented there.
    """

    def __init__(self, tracking_uri: str, *, artifact_location: str | None, experiment: str,
                 model_name: str, limits: ServerLimits | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.limits = limits or ServerLimits()
        self.artifact_location = artifact_location
        self.experiment = experiment
        self.model_name = model_name
        self._mlflow: MlflowClient | None = None
        self._store_uri: str | None = None
        self._experiment_id: str | None = None
        self._run_experiments: dict[str, str] = {}

    @property
    def _client(self) -> MlflowClient:
        # Created on first use: a client opens (and on first use migrates) the database.
        if self._mlflow is None:
            quiet_mlflow()
            uri = self.store_uri
            if is_server_uri(uri):
                apply_limits(self.limits)
                check_reachable(uri, self.limits, shown=self.display_uri)
            elif is_database_uri(uri):
                apply_pool(self.limits)
                started = time.monotonic()
                try:
                    check_database(uri, self.limits.pool(), what="MLflow tracking store")
                except StoreUnreachableError as exc:
                    raise TrackingUnreachableError(self.display_uri, exc.reason,
                                                   attempts=exc.attempts, hint=exc.hint,
                                                   waited=time.monotonic() - started) from None
            check_store_path(uri)
            try:
                with _first_open_lock(uri):
                    if self._store_missing() and self.artifact_location:
                        # Created by a client, a SQLite store's Default experiment would keep
                        # its artifacts in ./mlruns of whatever folder the command ran in;
                        # anything logged to it (the UI, a user's own code) would write there.
                        SqlAlchemyStore(uri, self.artifact_location)  # type: ignore[no-untyped-call]
                    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
                    if sqlite_path(uri) is not None:
                        _ = client._tracking_client.store  # created and migrated under the lock
                    self._mlflow = client
            except OSError as exc:  # SQLite: its folder cannot be made, the file not opened
                raise TrackingUnreachableError(
                    self.display_uri, exc.strerror or str(exc),
                    hint="Point tracking.tracking_uri in flywheel.yaml at a file in a folder "
                         "flywheel may create and write.") from exc
        return self._mlflow

    @property
    def store_uri(self) -> str:
        """The tracking URI with ``${VAR}`` expanded from the environment (holds the password:
        pass it to MLflow, never show it).

        Raises:
            ConfigError: If a variable it names is not set.
        """
        if self._store_uri is None:
            self._store_uri = expand_env(self.tracking_uri)
        return self._store_uri

    @property
    def display_uri(self) -> str:
        """The tracking URI as it may be shown: as written, its password masked."""
        return mask_uri(self.tracking_uri)

    def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return retry_on_contention(call)
        except MlflowException as exc:
            raise self._failure(what, exc) from exc
        except OSError as exc:  # the artifact store or a local store's files
            raise RegistryError(
                f"MLflow could not {what} ({type(exc).__name__}: {redact(str(exc))}). Check "
                f"that the tracking store {self.display_uri} and the artifact location "
                f"{self.artifact_location} are reachable and writable, then retry.") from exc
        except Exception as exc:
            if not _from_object_store(exc):
                raise
            raise RegistryError(
                f"MLflow could not {what}: the artifact store refused it "
                f"({_object_store_reason(exc, self.artifact_location)}). Check "
                "tracking.artifact_location "
                f"({self.artifact_location}): the bucket must exist and the credentials "
                "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, MLFLOW_S3_ENDPOINT_URL) must allow "
                "writing to it.") from None

    def _failure(self, what: str, exc: MlflowException) -> RegistryError:
        lost = lost_connection(exc)
        if lost is not None and is_database_uri(self.tracking_uri):
            return TrackingUnreachableError(
                self.display_uri, f"MLflow could not {what}: {lost}",
                hint="Check that the database server is running and reachable from here; "
                     "the call was retried for about 15 s.")
        if lost is not None:
            return TrackingUnreachableError(
                self.display_uri, f"MLflow could not {what}: {lost}",
                attempts=self.limits.retries + 1)
        return RegistryError(
            f"MLflow could not {what} ({exc.error_code}: {_short(redact(str(exc.message)))}). "
            f"Check that the tracking store {self.display_uri} is reachable and writable, then "
            "retry."
        )

    def _get_experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = self._call("open the experiment", self._open_experiment)
        return self._experiment_id

    def _open_experiment(self) -> str:
        found = self._client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                return str(self._client.create_experiment(
                    self.experiment, artifact_location=self.artifact_location))
            except MlflowException as exc:  # another process created it first
                found = self._client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise exc from None
        if found.lifecycle_stage == "deleted":
            self._client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)

    def _store_missing(self) -> bool:
        # Reading a SQLite store that does not exist yet would create it (and run MLflow's
        # migrations, seconds) only to find nothing; `flywheel models` on a new project.
        if self._mlflow is not None:
            return False
        path = sqlite_path(self.tracking_uri)
        if path is None or Path(path).exists():
            return False
        check_store_path(self.tracking_uri)
        return True


def _first_open_lock(uri: str) -> contextlib.AbstractContextManager[object]:
    """A file lock beside a SQLite store while this process opens it: processes that create a
    new store at the same moment would otherwise run MLflow's migrations against each other
    (alembic's "expected to match one row" and "_alembic_tmp_... already exists"). Nothing for
    other stores, whose servers serialize their own migrations."""
    path = sqlite_path(uri)
    if path is None:
        return contextlib.nullcontext()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return FileLock(f"{path}.lock", timeout=120)


def _short(message: object) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _from_object_store(exc: BaseException) -> bool:
    # boto3 and botocore load only with an s3:// artifact store; their errors are told by module.
    return type(exc).__module__.split(".", 1)[0] in ("botocore", "boto3", "s3transfer")


def _object_store_reason(exc: BaseException, location: str | None) -> str:
    # An upload fails as boto3's S3UploadFailedError, which keeps only the text of the
    # service's error; a read as botocore's ClientError, which keeps the response.
    response = getattr(exc, "response", None)
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    code = str(error.get("Code") or type(exc).__name__)
    if code == "NoSuchBucket" or "NoSuchBucket" in str(exc):
        bucket = error.get("BucketName") or _bucket(location)
        return f"the bucket {bucket!r} does not exist" if bucket else "no such bucket"
    return _short(redact(f"{code}: {error.get('Message') or exc}"))


def _bucket(location: str | None) -> str | None:
    if not location or "://" not in location:
        return None
    return location.split("://", 1)[1].split("/", 1)[0] or None
