"""MLflow tracking and model registry behind the few calls flywheel makes.

Every call goes through an explicit ``MlflowClient`` for this registry's tracking URI: nothing
reads or changes MLflow's process-global tracking URI, experiment or active run, so two
registries (or a registry and a user's own MLflow code) do not interfere.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import os
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID

from flywheel.core.errors import ModelNotFoundError, RegistryError, TrackingUnreachableError
from flywheel.registry import _monitoring_runs, _records
from flywheel.registry._modelfiles import (
    TAG_CHECKSUM,
    integrity_tags,
    load_verified,
    save_logged_model,
)
from flywheel.registry._promotion import name_filter, promote
from flywheel.registry._quiet import quiet_mlflow, quiet_warnings
from flywheel.registry._retry import retry_on_contention
from flywheel.registry._serialize import plan_serialization
from flywheel.registry._server import (
    ServerLimits,
    apply_limits,
    check_reachable,
    check_store_path,
    is_server_uri,
    lost_connection,
)
from flywheel.registry._types import LoggedModel, ModelVersionInfo, RunRecord

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities.model_registry import ModelVersion

    from flywheel.core.spec import ProjectSpec
    from flywheel.core.workspace import Workspace

__all__ = ["MlflowRegistry"]

T = TypeVar("T")

_log = logging.getLogger(__name__)

# MLflow's limits (mlflow.utils.validation): longer values are cut rather than refused.
_PARAM_LIMIT = 6000
_TAG_LIMIT = 8000
_VERSION_TAG_LIMIT = 100_000
_BATCH = 100  # params or tags per log_batch call
_DIGEST_LIMIT = 36  # MAX_DATASET_DIGEST_SIZE

# Optuna trial state -> MLflow run status; a trial logged while still running or waiting was cut
# short, so anything else counts as KILLED.
_TRIAL_STATUS = {"complete": "FINISHED", "pruned": "KILLED", "fail": "FAILED"}


class MlflowRegistry:
    """Runs, trials, datasets, models and registered versions of one project in MLflow.

    Args:
        tracking_uri: MLflow tracking (and registry) URI, such as ``sqlite:////abs/mlflow.db``.
        artifact_location: Where a newly created experiment stores artifacts; ``None`` lets
            MLflow choose. An existing experiment keeps its own.
        experiment: The experiment runs go to; created on first use.
        model_name: The registered model versions go to; created on first registration.
        limits: How long to wait for, and how often to retry, a tracking server reached over
            HTTP(S); its reachability is checked before the first call.
    """

    def __init__(self, tracking_uri: str, *, artifact_location: str | None, experiment: str,
                 model_name: str, limits: ServerLimits | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.limits = limits or ServerLimits()
        self.artifact_location = artifact_location
        self.experiment = experiment
        self.model_name = model_name
        self._mlflow: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._run_experiments: dict[str, str] = {}

    @classmethod
    def for_project(cls, spec: ProjectSpec, workspace: Workspace) -> MlflowRegistry:
        """The registry a project's spec asks for, by default SQLite inside ``.flywheel/``.

        Relative paths in ``tracking.tracking_uri`` (``sqlite:///rel.db``) and
        ``tracking.artifact_location`` resolve against the folder holding flywheel.yaml.
        """
        tracking = spec.tracking
        uri = tracking.tracking_uri or f"sqlite:///{workspace.mlflow_db}"
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            path = uri.removeprefix("sqlite:///")
            if path and path != ":memory:":
                uri = f"sqlite:///{spec.resolve(path)}"
        location = tracking.artifact_location
        if location is None:
            location = workspace.artifacts.as_uri()
        elif not urllib.parse.urlparse(location).scheme:
            location = spec.resolve(location).as_uri()
        limits = ServerLimits(connect_timeout_s=tracking.connect_timeout_seconds,
                              request_timeout_s=tracking.request_timeout_seconds,
                              retries=tracking.retries, backoff_s=tracking.backoff_seconds)
        return cls(uri, artifact_location=location,
                   experiment=tracking.experiment or spec.name,
                   model_name=tracking.model_name or spec.name, limits=limits)

    def __repr__(self) -> str:
        return (f"MlflowRegistry({self.tracking_uri!r}, experiment={self.experiment!r}, "
                f"model_name={self.model_name!r})")

    # Runs -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def parent_run(self, run_name: str, tags: Mapping[str, str] | None = None,
                   params: Mapping[str, Any] | None = None) -> Iterator[str]:
        """A run that lasts for the block; yields its id.

        Ends ``FINISHED``, or ``FAILED`` if the block raises (``KILLED`` for
        KeyboardInterrupt), with the error in tag ``flywheel.error``; the error propagates.
        """
        experiment_id = self._get_experiment_id()
        run = self._call("start a run", lambda: self._client.create_run(
            experiment_id, run_name=run_name, tags=_tag_values(tags or {})))
        run_id = run.info.run_id
        self._run_experiments[run_id] = experiment_id
        try:
            if params:
                self._log_batch(run_id, params=_flatten(params))
            yield run_id
        except BaseException as exc:
            killed = isinstance(exc, (KeyboardInterrupt, GeneratorExit))
            self._end_run(run_id, "KILLED" if killed else "FAILED", error=exc)
            raise
        self._end_run(run_id, "FINISHED")

    def log_trial(self, parent_run_id: str, number: int, *, params: Mapping[str, Any],
                  metrics: Mapping[str, float], state: str, duration_s: float,
                  error: str | None = None, tags: Mapping[str, str] | None = None) -> str:
        """Record one finished Optuna trial as a child run of ``parent_run_id``.

        Args:
            state: Optuna's state name (complete, pruned, fail); the run ends FINISHED,
                KILLED or FAILED accordingly and keeps the name in tag ``flywheel.trial_state``.
            duration_s: How long the trial took; sets the run's start time before its end.
            tags: More tags of the child run (such as the study it belongs to).

        Returns:
            The child run's id.
        """
        experiment_id = self._experiment_of(parent_run_id)
        end = int(time.time() * 1000)
        start = end - max(0, int(duration_s * 1000))
        run_tags = {**(tags or {}), MLFLOW_PARENT_RUN_ID: parent_run_id,
                    "flywheel.trial": str(number), "flywheel.trial_state": state}
        if error:
            run_tags["flywheel.error"] = error
        run = self._call("log a trial", lambda: self._client.create_run(
            experiment_id, start_time=start, run_name=f"trial-{number}",
            tags=_tag_values(run_tags)))
        run_id = run.info.run_id
        self._log_batch(run_id, params=_flatten(params),
                        metrics={**metrics, "duration_s": duration_s})
        status = _TRIAL_STATUS.get(state.lower(), "KILLED")
        self._call("end a trial run", lambda: self._client.set_terminated(
            run_id, status=status, end_time=end))
        return str(run_id)

    def find_runs(self, filter_string: str) -> list[RunRecord]:
        """Runs of the experiment matching MLflow's ``filter_string``, newest first, such as
        ``tags.`flywheel.study` = 'churn-1a2b'``."""
        if self._store_missing():
            return []
        experiment_id = self._get_experiment_id()
        runs: list[Any] = []
        token: str | None = None
        while True:
            page = self._call("search runs", functools.partial(
                self._client.search_runs, [experiment_id], filter_string, max_results=1000,
                order_by=["start_time DESC"], page_token=token))
            runs.extend(page)
            token = page.token
            if not token:
                break
        return [RunRecord(run_id=r.info.run_id, name=r.info.run_name or "",
                          status=r.info.status, tags=dict(r.data.tags),
                          start_time=r.info.start_time) for r in runs]

    def end_run(self, run_id: str, status: str, *, reason: str) -> None:
        """End a run left open (by a process that was killed) with ``status``, the reason in
        tag ``flywheel.error``."""
        self._log_batch(run_id, tags={"flywheel.error": reason})
        self._call("end the run", lambda: self._client.set_terminated(run_id, status=status))

    def rename_run(self, run_id: str, name: str) -> None:
        """Give the run a new display name."""
        self._call("rename the run", lambda: self._client.update_run(run_id, name=name))

    def log_dataset(self, run_id: str, frame: pd.DataFrame, *, name: str, fingerprint: str,
                    context: str = "training", source: str | None = None) -> None:
        """Record ``frame`` as a dataset input of the run, identified by our fingerprint.

        MLflow caps digests at 36 characters, so the digest is the fingerprint's first 36
        (``sha256:`` and 29 hex digits); the whole fingerprint is input tag
        ``flywheel.fingerprint``. The frame's schema and row count go along; its rows do not.
        """
        with quiet_warnings():
            # MLflow's annotation says str, but None is documented: "the code location".
            dataset = from_pandas(frame, source=cast(str, source), name=name,
                                  digest=fingerprint[:_DIGEST_LIMIT])
            fields = dataset.to_dict()
        entity = Dataset(name=fields["name"], digest=fields["digest"],
                         source_type=fields["source_type"], source=fields["source"],
                         schema=fields.get("schema"), profile=fields.get("profile"))
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, context),
                InputTag("flywheel.fingerprint", fingerprint)]
        self._call("log a dataset", lambda: self._client.log_inputs(
            run_id, datasets=[DatasetInput(entity, tags)]))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Record final metrics of the run (step 0)."""
        self._log_batch(run_id, metrics=metrics)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set tags on the run; values longer than MLflow's 8,000 characters are cut."""
        self._log_batch(run_id, tags=tags)

    def log_artifact_text(self, run_id: str, relative_path: str, text: str) -> None:
        """Store ``text`` as the run artifact ``relative_path`` (POSIX, such as ``a/b.json``)."""
        self._call("store an artifact", lambda: self._client.log_text(run_id, text,
                                                                      relative_path))

    def read_artifact_text(self, run_id: str, relative_path: str) -> str:
        """The text of run artifact ``relative_path`` (such as ``schema.yaml``).

        Raises:
            RegistryError: If the artifact cannot be read.
        """
        def read() -> str:
            with tempfile.TemporaryDirectory() as tmp:
                local = self._client.download_artifacts(run_id, relative_path, tmp)
                return Path(local).read_text(encoding="utf-8")

        try:
            return self._call(f"read artifact {relative_path!r}", read)
        except OSError as exc:
            raise RegistryError(f"cannot read artifact {relative_path!r} of run {run_id} "
                                f"({exc}); the artifact store may be unavailable.") from exc

    def run_tags(self, run_id: str) -> dict[str, str]:
        """The tags of run ``run_id`` (``flywheel.error``, ``flywheel.card_error``, ...).

        Raises:
            RegistryError: If the run cannot be read.
        """
        run = self._call("read a run", lambda: self._client.get_run(run_id))
        return {str(k): str(v) for k, v in run.data.tags.items()}

    def version_info(self, version_or_alias: str) -> ModelVersionInfo:
        """One version, by number or alias.

        Raises:
            ModelNotFoundError: If no such version or alias exists.
        """
        return _info(self._resolve(version_or_alias), self._aliases())

    # Models -----------------------------------------------------------------------------

    def log_model(self, run_id: str, model: Any, *, input_example: pd.DataFrame,
                  allow_pickle: bool = False, extra_trusted_types: list[str] | tuple[str, ...] = (),
                  pyfunc_predict_fn: str = "predict") -> LoggedModel:
        """Log a fitted scikit-learn model to the run in MLflow's sklearn flavor.

        Saved with skops, trusting exactly the types the model holds (plus
        ``extra_trusted_types``); with a signature inferred from ``input_example`` and the
        model's ``pyfunc_predict_fn`` output, and the example itself. The format, trusted types
        and a SHA-256 checksum of the saved files are recorded as tags and run artifacts.

        Raises:
            ModelSerializationError: If skops cannot serialize the model and ``allow_pickle``
                is false; with it, the model is saved with cloudpickle instead.
        """
        with quiet_warnings():
            plan = plan_serialization(model, input_example=input_example,
                                      predict_fn=pyfunc_predict_fn, allow_pickle=allow_pickle,
                                      extra_trusted_types=extra_trusted_types)
            try:
                return save_logged_model(self._client, run_id, model,
                                         input_example=input_example, plan=plan,
                                         predict_fn=pyfunc_predict_fn)
            except MlflowException as exc:
                raise self._failure("log the model", exc) from exc

    def register(self, logged: LoggedModel, *, tags: Mapping[str, str] | None = None
                 ) -> ModelVersionInfo:
        """Register ``logged`` as a new version of the model.

        The model's first version gets alias ``champion``; each later one ``challenger``
        (moved from the version it was on). Safe to call from several processes at once:
        store contention is retried with backoff, and the alias rules converge.

        Args:
            tags: Version tags (data fingerprint, spec hash, metrics, ...); the integrity
                record (``flywheel.serialization``, ``.trusted_types``, ``.checksum``,
                ``.model_id``) is added.

        Raises:
            RegistryError: If the logged model's checksum disagrees with the one recorded for
                it in the tracking store, or the store fails.
        """
        self._check_logged(logged)
        self._ensure_registered_model()
        version_tags = {**_tag_values(tags or {}, limit=_VERSION_TAG_LIMIT),
                        **integrity_tags(logged)}
        created = self._call("register the model", lambda: self._client.create_model_version(
            self.model_name, source=logged.artifact_uri, run_id=logged.run_id,
            tags=version_tags, model_id=logged.model_id))
        version = str(created.version)
        self._call("set the model's aliases",
                   lambda: promote(self._client, self.model_name, version))
        return _info(self._get_version(version), self._aliases())

    def set_alias(self, alias: str, version: str) -> None:
        """Point ``alias`` at ``version``, moving it from any other version.

        Raises:
            ModelNotFoundError: If the version does not exist.
        """
        number = self._get_version(version).version
        self._call(f"set alias {alias!r}", lambda: self._client.set_registered_model_alias(
            self.model_name, alias, str(number)))

    def alias_version(self, alias: str) -> str | None:
        """The version ``alias`` points at, or ``None`` if it points nowhere."""
        return self._aliases().get(alias)

    def aliases_and_tags(self) -> tuple[dict[str, str], dict[str, str]]:
        """The model's aliases and its registered-model tags, read together in one call.

        Both are empty before the first registration.
        """
        if self._store_missing():
            return {}, {}
        return self._call("read the model's aliases and tags", self._read_model)

    def store_stamp(self) -> tuple[int, ...] | None:
        """A cheap token that changes when a local SQLite store is written (its files' sizes
        and modification times), or None for other stores. A poller reads the registry only
        when it changed: a stat costs microseconds, a read through MLflow milliseconds of
        CPU, which a server's requests would wait for."""
        if not self.tracking_uri.startswith("sqlite:///"):
            return None
        path = self.tracking_uri.removeprefix("sqlite:///")
        if path in ("", ":memory:"):
            return None
        stamp: list[int] = []
        for suffix in ("", "-wal", "-journal"):
            try:
                info = os.stat(path + suffix)
            except OSError:
                stamp.extend((0, 0))
            else:
                stamp.extend((info.st_mtime_ns, info.st_size))
        return tuple(stamp)

    def set_model_tag(self, key: str, value: str) -> None:
        """Set a tag of the registered model itself (not of a version).

        Raises:
            RegistryError: If the model is not registered yet, or the value is over MLflow's
                limit of 100,000 characters.
        """
        if len(value) > _VERSION_TAG_LIMIT:
            raise RegistryError(f"the model tag {key!r} would hold {len(value):,} characters, "
                                f"over MLflow's limit of {_VERSION_TAG_LIMIT:,}.")
        self._call(f"set model tag {key!r}", lambda: self._client.set_registered_model_tag(
            self.model_name, key, value))

    def delete_model_tag(self, key: str) -> None:
        """Remove a tag of the registered model; nothing happens if it is not set."""
        def delete() -> None:
            try:
                self._client.delete_registered_model_tag(self.model_name, key)
            except MlflowException as exc:
                if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise

        self._call(f"remove model tag {key!r}", delete)

    def versions(self) -> list[ModelVersionInfo]:
        """Every registered version, newest first; empty before the first registration."""
        if self._store_missing():
            return []
        aliases = self._aliases()
        found: list[ModelVersion] = []
        token: str | None = None
        while True:
            page = self._call("list model versions", functools.partial(
                self._client.search_model_versions, name_filter(self.model_name),
                max_results=1000, order_by=["version_number DESC"], page_token=token))
            found.extend(page)
            token = page.token
            if not token:
                break
        return [_info(v, aliases) for v in found]

    def load_model(self, version_or_alias: str, *, allow_pickle: bool = False) -> Any:
        """Load a registered version (``"3"``, ``"v3"``) or alias (``"champion"``).

        Checks every file against the checksum recorded at logging time, then loads with skops
        trusting only the recorded types.

        Args:
            allow_pickle: Load a version saved with pickle (loading pickle runs code from the
                file); without it such a version is refused.

        Raises:
            ModelNotFoundError: If no such version or alias exists.
            ModelIntegrityError: If the files changed since logging or cannot be verified.
            ModelSerializationError: If the version is pickled and ``allow_pickle`` is false.
        """
        version = self._resolve(version_or_alias)
        with quiet_warnings():
            return load_verified(self._client, version, tracking_uri=self.tracking_uri,
                                 allow_pickle=allow_pickle)

    # Beyond the core calls: aliases and tags after registration, folders of artifacts,
    # monitoring runs (bodies in _records and _monitoring_runs).

    def delete_alias(self, alias: str) -> None:
        """Remove ``alias`` from whichever version holds it; nothing happens if none does."""
        _records.delete_alias(self, alias)

    def apply_alias_rules(self, version: str) -> None:
        """Give ``version`` the aliases registration gives a new version (champion if first,
        else challenger); recovery finishes an interrupted registration with it."""
        _records.apply_alias_rules(self, version)

    def set_version_tags(self, version: str, tags: Mapping[str, str]) -> None:
        """Set tags on a registered version (values cut at MLflow's 100,000 characters)."""
        _records.set_version_tags(self, version, tags)

    def delete_version_tags(self, version: str, keys: list[str]) -> None:
        """Remove tags from a registered version (a tag already gone is no error)."""
        _records.delete_version_tags(self, version, keys)

    def log_artifact_folder(self, run_id: str, folder: str | Path, artifact_path: str) -> None:
        """Store every file under ``folder`` as run artifacts under ``artifact_path``."""
        _records.log_artifact_folder(self, run_id, folder, artifact_path)

    def download_artifacts(self, run_id: str, artifact_path: str,
                           destination: str | Path) -> Path:
        """Fetch a run artifact (file or folder) into ``destination``; returns its local path.

        Raises:
            RegistryError: If the artifact does not exist or cannot be fetched.
        """
        return _records.download_artifacts(self, run_id, artifact_path, destination)

    def artifact_exists(self, run_id: str, artifact_path: str) -> bool:
        """Whether the run has the artifact ``artifact_path`` (such as ``profile.json``)."""
        return _records.artifact_exists(self, run_id, artifact_path)

    def monitoring_run(self, version: ModelVersionInfo) -> str:
        """The id of ``version``'s monitoring run, created (and tagged on the version) if
        needed."""
        return _monitoring_runs.monitoring_run(self, version)

    def log_window_metrics(self, run_id: str, metrics: Mapping[str, float], *,
                           step: int) -> None:
        """Log one monitoring window's metrics at ``step`` (finite values only)."""
        _monitoring_runs.log_window_metrics(self, run_id, metrics, step=step)

    # Internals --------------------------------------------------------------------------

    @property
    def _client(self) -> MlflowClient:
        # Created on first use: a client opens (and on first use migrates) the database.
        if self._mlflow is None:
            quiet_mlflow()
            if is_server_uri(self.tracking_uri):
                apply_limits(self.limits)
                check_reachable(self.tracking_uri, self.limits)
            check_store_path(self.tracking_uri)
            try:
                if self._store_missing() and self.artifact_location:
                    # Created by a client, a SQLite store's Default experiment would keep its
                    # artifacts in ./mlruns of whatever folder the command ran in; anything
                    # logged to it (the UI, a user's own MLflow code) would write there.
                    SqlAlchemyStore(self.tracking_uri, self.artifact_location)  # type: ignore[no-untyped-call]
                self._mlflow = MlflowClient(tracking_uri=self.tracking_uri,
                                            registry_uri=self.tracking_uri)
            except OSError as exc:  # SQLite: its folder cannot be made, the file not opened
                raise TrackingUnreachableError(
                    self.tracking_uri, exc.strerror or str(exc),
                    hint="Point tracking.tracking_uri in flywheel.yaml at a file in a folder "
                         "flywheel may create and write.") from exc
        return self._mlflow

    def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return retry_on_contention(call)
        except MlflowException as exc:
            raise self._failure(what, exc) from exc
        except OSError as exc:  # the artifact store or a local store's files
            raise RegistryError(
                f"MLflow could not {what} ({type(exc).__name__}: {exc}). Check that the "
                f"tracking store {self.tracking_uri} and the artifact location "
                f"{self.artifact_location} are reachable and writable, then retry.") from exc

    def _failure(self, what: str, exc: MlflowException) -> RegistryError:
        lost = lost_connection(exc)
        if lost is not None:
            return TrackingUnreachableError(
                self.tracking_uri, f"MLflow could not {what}: {lost}",
                attempts=self.limits.retries + 1)
        return RegistryError(
            f"MLflow could not {what} ({exc.error_code}: {_short(exc.message)}). Check that "
            f"the tracking store {self.tracking_uri} is reachable and writable, then retry."
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

    def _experiment_of(self, run_id: str) -> str:
        if run_id not in self._run_experiments:
            run = self._call("read a run", lambda: self._client.get_run(run_id))
            self._run_experiments[run_id] = run.info.experiment_id
        return self._run_experiments[run_id]

    def _end_run(self, run_id: str, status: str, *, error: BaseException | None = None) -> None:
        try:
            if error is not None:
                text = f"{type(error).__name__}: {error}".strip().rstrip(":")
                self._log_batch(run_id, tags={"flywheel.error": text})
            self._call("end the run", lambda: self._client.set_terminated(
                run_id, status=RunStatus.to_string(RunStatus.from_string(status))))
        except RegistryError:
            if error is None:
                raise
            # Keep the block's own error; this one is only bookkeeping.
            _log.warning("could not mark MLflow run %s as %s", run_id, status, exc_info=True)

    def _log_batch(self, run_id: str, *, params: Mapping[str, str] | None = None,
                   metrics: Mapping[str, float] | None = None,
                   tags: Mapping[str, str] | None = None) -> None:
        now = int(time.time() * 1000)
        param_items = [Param(k, _cut(str(v), _PARAM_LIMIT)) for k, v in (params or {}).items()]
        metric_items = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
        tag_items = [RunTag(k, v) for k, v in _tag_values(tags or {}).items()]
        while param_items or metric_items or tag_items:
            p, param_items = param_items[:_BATCH], param_items[_BATCH:]
            m, metric_items = metric_items[:_BATCH * 10], metric_items[_BATCH * 10:]
            t, tag_items = tag_items[:_BATCH], tag_items[_BATCH:]
            self._call("log to the run", functools.partial(
                self._client.log_batch, run_id, metrics=m, params=p, tags=t))

    def _check_logged(self, logged: LoggedModel) -> None:
        entity = self._call("read the logged model",
                            lambda: self._client.get_logged_model(logged.model_id))
        recorded = entity.tags.get(TAG_CHECKSUM)
        if recorded != logged.checksum:
            raise RegistryError(
                f"The logged model {logged.model_id} has checksum {recorded!r} in the tracking "
                f"store, not {logged.checksum!r}; it was changed or logged elsewhere. Log the "
                "model again with this registry and register the result."
            )

    def _ensure_registered_model(self) -> None:
        def ensure() -> None:
            try:
                self._client.get_registered_model(self.model_name)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                try:
                    self._client.create_registered_model(self.model_name)
                except MlflowException as again:  # another process created it first
                    if again.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise

        self._call("create the registered model", ensure)

    def _store_missing(self) -> bool:
        # Reading a SQLite store that does not exist yet would create it (and run MLflow's
        # migrations, seconds) only to find nothing; `flywheel models` on a new project.
        if self._mlflow is not None or not self.tracking_uri.startswith("sqlite:///"):
            return False
        path = self.tracking_uri.removeprefix("sqlite:///")
        if path in ("", ":memory:") or Path(path).exists():
            return False
        check_store_path(self.tracking_uri)
        return True

    def _aliases(self) -> dict[str, str]:
        if self._store_missing():
            return {}
        return self._call("read the model's aliases", self._read_model)[0]

    def _read_model(self) -> tuple[dict[str, str], dict[str, str]]:
        try:
            model = self._client.get_registered_model(self.model_name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}, {}
            raise
        return ({alias: str(v) for alias, v in model.aliases.items()},
                {str(k): str(v) for k, v in (model.tags or {}).items()})

    def _get_version(self, version: str) -> ModelVersion:
        number = version[1:] if version[:1] in ("v", "V") and version[1:].isdigit() else version
        if not number.isdigit() or self._store_missing():
            raise self._not_found(number)
        try:
            return retry_on_contention(
                lambda: self._client.get_model_version(self.model_name, number))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise self._not_found(number) from None
            raise self._failure("read a model version", exc) from exc

    def _resolve(self, ref: str) -> ModelVersion:
        ref = ref.strip()
        if ref.isdigit() or (ref[:1] in ("v", "V") and ref[1:].isdigit()):
            return self._get_version(ref)
        number = self._aliases().get(ref)
        if number is None:
            raise self._not_found(ref)
        return self._get_version(number)

    def _not_found(self, ref: str) -> ModelNotFoundError:
        try:
            versions = [v.version for v in self.versions()]
            aliases = self._aliases()
        except RegistryError:
            versions, aliases = [], {}
        return ModelNotFoundError(self.model_name, ref, versions=versions, aliases=aliases)


def _info(version: ModelVersion, aliases: Mapping[str, str]) -> ModelVersionInfo:
    number = str(version.version)
    return ModelVersionInfo(
        name=version.name,
        version=number,
        aliases=tuple(sorted(a for a, v in aliases.items() if v == number)),
        tags=dict(version.tags),
        run_id=version.run_id,
        created=dt.datetime.fromtimestamp(version.creation_timestamp / 1000, tz=dt.UTC),
        status=str(version.status),
        source=version.source,
    )


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def _tag_values(tags: Mapping[str, Any], *, limit: int = _TAG_LIMIT) -> dict[str, str]:
    return {str(k): _cut(str(v), limit) for k, v in tags.items()}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(message: object) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= 300 else text[:297] + "..."
