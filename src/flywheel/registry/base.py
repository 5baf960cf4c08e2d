"""What every registry back end offers: the interface serving, rollouts, monitoring and the
pipelines program against.

Two protocols, one per idea, after Optuna's ``BaseStorage``: a :class:`Tracker` records runs,
trials, data sets, metrics and artifacts; a :class:`ModelStore` holds registered versions, their
aliases and tags, and loads them verified. :class:`Registry` is both, which is what a project's
back end is (MLflow on SQLite embedded, an MLflow server at scale).

Contract (checked for every back end by ``flywheel.testing.RegistryContract``):

- Version numbers are unique and increasing, also when several processes register at once.
- A model loads only if every file matches the checksum recorded when it was logged.
- ``store_stamp`` changes whenever the store is written, and not when it is only read; a back end
  that cannot tell cheaply returns ``None`` and pollers then read in full every time.
- Every failure of the store is a :class:`~flywheel.core.errors.RegistryError` (never the back
  end's own exception type); a missing version or alias is a
  :class:`~flywheel.core.errors.ModelNotFoundError` naming what exists.
- Methods are safe to call from several threads of one process and from several processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

    from flywheel.registry._types import LoggedModel, ModelVersionInfo, RunRecord

__all__ = ["ModelStore", "Registry", "Tracker"]


@runtime_checkable
class Tracker(Protocol):
    """Runs, trials, data sets, metrics and artifacts of one project's experiment."""

    tracking_uri: str

    def parent_run(self, run_name: str, tags: Mapping[str, str] | None = None,
                   params: Mapping[str, Any] | None = None) -> AbstractContextManager[str]:
        """A run lasting for the block; yields its id; ends FINISHED, FAILED or KILLED."""
        ...

    def log_trial(self, parent_run_id: str, number: int, *, params: Mapping[str, Any],
                  metrics: Mapping[str, float], state: str, duration_s: float,
                  error: str | None = None, tags: Mapping[str, str] | None = None) -> str:
        """Record one finished search trial as a child run; returns its id."""
        ...

    def find_runs(self, filter_string: str) -> list[RunRecord]:
        """Runs of the experiment matching MLflow's ``filter_string``, newest first."""
        ...

    def end_run(self, run_id: str, status: str, *, reason: str) -> None:
        """End a run left open with ``status``, the reason in tag ``flywheel.error``."""
        ...

    def rename_run(self, run_id: str, name: str) -> None:
        """Give the run a new display name."""
        ...

    def run_tags(self, run_id: str) -> dict[str, str]:
        """The tags of run ``run_id``."""
        ...

    def log_dataset(self, run_id: str, frame: pd.DataFrame, *, name: str, fingerprint: str,
                    context: str = "training", source: str | None = None) -> None:
        """Record ``frame`` (schema and size, not rows) as an input of the run."""
        ...

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Record final metrics of the run."""
        ...

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set tags on the run."""
        ...

    def log_artifact_text(self, run_id: str, relative_path: str, text: str) -> None:
        """Store ``text`` as the run artifact ``relative_path``."""
        ...

    def read_artifact_text(self, run_id: str, relative_path: str) -> str:
        """The text of a run artifact."""
        ...

    def log_artifact_folder(self, run_id: str, folder: str | Path, artifact_path: str) -> None:
        """Store every file under ``folder`` as run artifacts under ``artifact_path``."""
        ...

    def download_artifacts(self, run_id: str, artifact_path: str,
                           destination: str | Path) -> Path:
        """Fetch a run artifact (file or folder) into ``destination``; its local path."""
        ...

    def artifact_exists(self, run_id: str, artifact_path: str) -> bool:
        """Whether the run holds the artifact ``artifact_path``."""
        ...

    def monitoring_run(self, version: ModelVersionInfo) -> str:
        """The id of ``version``'s monitoring run, created on first use."""
        ...

    def log_window_metrics(self, run_id: str, metrics: Mapping[str, float], *,
                           step: int) -> None:
        """Log one monitoring window's finite metrics at ``step``."""
        ...


@runtime_checkable
class ModelStore(Protocol):
    """Registered versions of one model: aliases, tags, verified loading."""

    model_name: str

    def log_model(self, run_id: str, model: Any, *, input_example: pd.DataFrame,
                  allow_pickle: bool = False, extra_trusted_types: list[str] | tuple[str, ...] = (),
                  pyfunc_predict_fn: str = "predict") -> LoggedModel:
        """Save a fitted model to the run with its integrity record."""
        ...

    def register(self, logged: LoggedModel, *, tags: Mapping[str, str] | None = None
                 ) -> ModelVersionInfo:
        """A new version of the model (first: champion, later: challenger)."""
        ...

    def apply_alias_rules(self, version: str) -> None:
        """Give ``version`` the aliases registration gives a new version."""
        ...

    def version_info(self, version_or_alias: str) -> ModelVersionInfo:
        """One version by number (``"3"``, ``"v3"``) or alias."""
        ...

    def versions(self) -> list[ModelVersionInfo]:
        """Every version, newest first."""
        ...

    def set_alias(self, alias: str, version: str) -> None:
        """Point ``alias`` at ``version``, moving it from any other."""
        ...

    def delete_alias(self, alias: str) -> None:
        """Remove ``alias``; nothing happens if no version holds it."""
        ...

    def alias_version(self, alias: str) -> str | None:
        """The version ``alias`` points at, or ``None``."""
        ...

    def aliases_and_tags(self) -> tuple[dict[str, str], dict[str, str]]:
        """The model's aliases and registered-model tags, read together."""
        ...

    def set_model_tag(self, key: str, value: str) -> None:
        """Set a tag of the registered model itself."""
        ...

    def delete_model_tag(self, key: str) -> None:
        """Remove a registered-model tag; nothing happens if it is not set."""
        ...

    def set_version_tags(self, version: str, tags: Mapping[str, str]) -> None:
        """Set tags on a registered version."""
        ...

    def delete_version_tags(self, version: str, keys: list[str]) -> None:
        """Remove tags from a registered version; a tag already gone is no error."""
        ...

    def store_stamp(self) -> tuple[int, ...] | None:
        """A cheap token that changes when the store is written, or ``None``."""
        ...

    def load_model(self, version_or_alias: str, *, allow_pickle: bool = False) -> Any:
        """Load a version after checking its files against the recorded checksum."""
        ...


@runtime_checkable
class Registry(Tracker, ModelStore, Protocol):
    """A project's system of record: tracking and model registry together."""
