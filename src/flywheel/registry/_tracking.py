"""MLflow tracking: runs, trials, data sets, metrics, artifacts and monitoring runs.

A model version's monitoring run is where ``flywheel monitor`` logs each window's metrics: one
run per version, created on first use as a child of the run that trained the version (so the
MLflow UI shows it under that run) and named ``monitor-v<N>``; the version gets tag
``flywheel.monitoring_run`` pointing at it. Each window logs its metrics at the next step, so
MLflow charts them over time.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunStatus, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID

from flywheel.core.errors import RegistryError
from flywheel.registry._connection import _Connection, cut, tag_values
from flywheel.registry._quiet import quiet_warnings
from flywheel.registry._types import RunRecord

if TYPE_CHECKING:
    import pandas as pd

    from flywheel.registry._types import ModelVersionInfo

__all__ = ["MONITORING_RUN_TAG"]

_log = logging.getLogger(__name__)

MONITORING_RUN_TAG = "flywheel.monitoring_run"

# MLflow's limits (mlflow.utils.validation): longer values are cut rather than refused.
_PARAM_LIMIT = 6000
_BATCH = 100  # params or tags per log_batch call
_WINDOW_BATCH = 1000  # metrics per log_batch call of a monitoring window
_DIGEST_LIMIT = 36  # MAX_DATASET_DIGEST_SIZE

# Optuna trial state -> MLflow run status; a trial logged while still running or waiting was cut
# short, so anything else counts as KILLED.
_TRIAL_STATUS = {"complete": "FINISHED", "pruned": "KILLED", "fail": "FAILED"}


class _Tracking(_Connection):
    """Runs of the registry's experiment and what they hold."""

    @contextlib.contextmanager
    def parent_run(self, run_name: str, tags: Mapping[str, str] | None = None,
                   params: Mapping[str, Any] | None = None) -> Iterator[str]:
        """A run that lasts for the block; yields its id.

        Ends ``FINISHED``, or ``FAILED`` if the block raises (``KILLED`` for
        KeyboardInterrupt), with the error in tag ``flywheel.error``; the error propagates.
        """
        experiment_id = self._get_experiment_id()
        run = self._call("start a run", lambda: self._client.create_run(
            experiment_id, run_name=run_name, tags=tag_values(tags or {})))
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
            tags=tag_values(run_tags)))
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

    def run_tags(self, run_id: str) -> dict[str, str]:
        """The tags of run ``run_id`` (``flywheel.error``, ``flywheel.card_error``, ...).

        Raises:
            RegistryError: If the run cannot be read.
        """
        run = self._call("read a run", lambda: self._client.get_run(run_id))
        return {str(k): str(v) for k, v in run.data.tags.items()}

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

    # Artifacts --------------------------------------------------------------------------

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

    def log_artifact_folder(self, run_id: str, folder: str | Path, artifact_path: str) -> None:
        """Store every file under ``folder`` as run artifacts under ``artifact_path`` (the
        model card's PNG plots are binary)."""
        self._call("store artifacts", lambda: self._client.log_artifacts(
            run_id, str(folder), artifact_path))

    def download_artifacts(self, run_id: str, artifact_path: str,
                           destination: str | Path) -> Path:
        """Fetch a run artifact (file or folder) into ``destination``; returns its local path.

        Raises:
            RegistryError: If the artifact does not exist or cannot be fetched.
        """
        Path(destination).mkdir(parents=True, exist_ok=True)
        try:
            local = self._call(f"fetch artifact {artifact_path!r}", lambda: self._client
                               .download_artifacts(run_id, artifact_path, str(destination)))
        except OSError as exc:
            raise RegistryError(f"cannot fetch artifact {artifact_path!r} of run {run_id} "
                                f"({exc}); the artifact store may be unavailable.") from exc
        return Path(local)

    def artifact_exists(self, run_id: str, artifact_path: str) -> bool:
        """Whether the run has the artifact ``artifact_path`` (such as ``profile.json``).

        Raises:
            RegistryError: If the artifact store cannot be listed.
        """
        parent = artifact_path.rpartition("/")[0] or None
        try:
            found = self._call("list artifacts", lambda: self._client.list_artifacts(
                run_id, parent))
        except OSError as exc:
            raise RegistryError(f"cannot list the artifacts of run {run_id} ({exc}); the "
                                "artifact store may be unavailable.") from exc
        return any(item.path == artifact_path for item in found)

    # Monitoring runs --------------------------------------------------------------------

    def monitoring_run(self, version: ModelVersionInfo) -> str:
        """The id of ``version``'s monitoring run, created (and tagged on the version) if
        needed."""
        known = version.tags.get(MONITORING_RUN_TAG)
        if known:
            return known
        experiment = self._get_experiment_id()
        tags = {"flywheel.monitoring": "true", "flywheel.model": self.model_name,
                "flywheel.model_version": version.version}
        if version.run_id:
            tags[MLFLOW_PARENT_RUN_ID] = version.run_id
        run = self._call("start the monitoring run", lambda: self._client.create_run(
            experiment, run_name=f"monitor-v{version.version}", tags=tags))
        run_id = str(run.info.run_id)
        self._call("end the monitoring run", lambda: self._client.set_terminated(
            run_id, status="FINISHED"))
        # A run id is far below a version tag's limit: nothing to cut.
        self._call("tag the model version", functools.partial(
            self._client.set_model_version_tag, self.model_name, version.version,
            MONITORING_RUN_TAG, run_id))
        return run_id

    def log_window_metrics(self, run_id: str, metrics: Mapping[str, float], *,
                           step: int) -> None:
        """Log one monitoring window's metrics at ``step`` (finite values only)."""
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v == v
                 and abs(float(v)) != float("inf")]
        for start in range(0, len(items), _WINDOW_BATCH):
            chunk = items[start:start + _WINDOW_BATCH]
            self._call("log monitoring metrics", functools.partial(
                self._client.log_batch, run_id, metrics=chunk))

    # Internals --------------------------------------------------------------------------

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
        param_items = [Param(k, cut(str(v), _PARAM_LIMIT)) for k, v in (params or {}).items()]
        metric_items = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
        tag_items = [RunTag(k, v) for k, v in tag_values(tags or {}).items()]
        while param_items or metric_items or tag_items:
            p, param_items = param_items[:_BATCH], param_items[_BATCH:]
            m, metric_items = metric_items[:_BATCH * 10], metric_items[_BATCH * 10:]
            t, tag_items = tag_items[:_BATCH], tag_items[_BATCH:]
            self._call("log to the run", functools.partial(
                self._client.log_batch, run_id, metrics=m, params=p, tags=t))


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)
    return flat
