"""A flywheel project: its spec, schema and workspace, and what can be done with them.

This is the Python API the CLI is a thin layer over::

    project = Project.init("churn.parquet", target="churn")
    report = project.validate()
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from flywheel.core.errors import ConfigError, DataError
from flywheel.core.spec import SPEC_FILE, DataSpec, ProjectSpec, TargetSpec, Task, load_spec
from flywheel.core.template import render_spec
from flywheel.core.workspace import Workspace, atomic_write_text
from flywheel.data import (
    DataSchema,
    ReferenceProfile,
    ValidationReport,
    infer_positive_class,
    infer_schema,
    load_table,
    profile_frame,
    sniff_delimiter,
    validate_frame,
)
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines._lazy import LazyModule

if TYPE_CHECKING:
    from flywheel.evaluation import GateReport
    from flywheel.monitoring import MonitorResult
    from flywheel.pipelines import monitor as _monitor
    from flywheel.pipelines import promote as _promote
    from flywheel.pipelines import train as _train
    from flywheel.pipelines.promote import AliasChange
    from flywheel.pipelines.train import TrainResult
    from flywheel.registry import AuditHistory
    from flywheel.training import TrialProgress
else:
    # MLflow, Optuna and LightGBM take seconds to import, and `flywheel validate` and
    # `flywheel init` must not pay for them: these modules load on first use.
    _monitor = LazyModule("flywheel.pipelines.monitor")
    _promote = LazyModule("flywheel.pipelines.promote")
    _train = LazyModule("flywheel.pipelines.train")


class Project(ProjectContext):
    """A project folder: ``flywheel.yaml``, its ``schema.yaml`` and the ``.flywheel/`` workspace.

    What the pipelines need of it (spec, workspace, schema, data, registry) comes from
    ``ProjectContext``; the methods here are the user-facing flows.
    """

    @classmethod
    def init(cls, data: str | Path, target: str, *, directory: str | Path | None = None,
             task: Task | None = None, name: str | None = None, encoding: str = "utf-8",
             force: bool = False) -> Project:
        """Infer a schema from ``data`` and write flywheel.yaml and schema.yaml.

        Args:
            data: CSV or Parquet training data.
            target: The column to predict.
            directory: Project folder; defaults to the current folder.
            task: Overrides the inferred task.
            name: Project name; defaults to the data file's stem.
            encoding: Text encoding of a CSV file.
            force: Overwrite an existing flywheel.yaml and schema.yaml.

        Raises:
            ConfigError: If a spec exists already and ``force`` is false.
            DataError: If the data cannot be read or cannot support a schema.
        """
        root = Path(directory or ".").resolve()
        data_path = Path(data).expanduser().resolve()
        spec_path = root / SPEC_FILE
        if spec_path.exists() and not force:
            raise ConfigError("a project spec exists already; pass --force to overwrite it and "
                              "its schema.", path=spec_path)
        frame = load_table(data_path, encoding=encoding)
        try:
            schema = infer_schema(frame, target, task=task, source=data_path.name)
        except DataError as exc:
            raise DataError(str(exc), path=data_path) from exc
        positive = infer_positive_class(frame[target]) if schema.task == "binary" else None
        spec = ProjectSpec(
            name=name or data_path.stem,
            data=DataSpec(path=_relative(Path(data), Path(directory or ".")), encoding=encoding,
                          delimiter=_delimiter(data_path, encoding)),
            target=TargetSpec(column=target, task=schema.task, positive_class=positive),
        ).at(root)
        comments = _init_comments(frame[target], schema, task, positive)
        workspace = Workspace(root)
        with workspace.lock("project"):
            root.mkdir(parents=True, exist_ok=True)
            schema.save(spec.schema_path)
            atomic_write_text(spec_path, render_spec(spec, inferred=comments))
            profile = profile_frame(frame, schema)
            profile.save(workspace.profiles / f"{_short(profile.fingerprint)}.json")
        return cls(load_spec(spec_path), schema=schema)

    def validate(self, path: str | Path | None = None, *, frame: pd.DataFrame | None = None,
                 require_target: bool = True) -> ValidationReport:
        """Check data against the schema and report every failed check (never raises for bad
        data; raises DataError only when the file cannot be read)."""
        source = str(path) if path is not None else self.spec.data.path
        data = frame if frame is not None else self.load_data(path)
        return validate_frame(data, self.schema, self.spec.validation,
                              require_target=require_target, source=source)

    def train(self, data: str | Path | None = None, *, trials: int | None = None,
              timeout: float | None = None, seed: int | None = None,
              on_trial: Callable[[TrialProgress], None] | None = None,
              on_stage: Callable[[str], None] | None = None, until_budget: bool = False,
              register_again: bool = False) -> TrainResult:
        """Validate, search, evaluate, track and register a model; see ``pipelines.train``.

        ``trials``, ``timeout`` and ``seed`` override the spec's search settings for this run;
        ``until_budget`` without ``trials`` searches until the time budget, however many
        trials fit. ``register_again`` registers a study's best model even when it is
        registered already.
        """
        return _train.train_project(self, data=data, trials=trials, timeout=timeout, seed=seed,
                                    until_budget=until_budget, on_trial=on_trial,
                                    on_stage=on_stage, register_again=register_again)

    def profile(self, path: str | Path | None = None) -> ReferenceProfile:
        """The reference profile of ``path`` (or the training data)."""
        return profile_frame(self.load_data(path), self.schema)

    def promote(self, version: str, *, reason: str | None = None,
                force: bool = False) -> AliasChange:
        """Make ``version`` (a number or alias) champion; see ``pipelines.promote``.

        Raises:
            ModelNotFoundError: If the version does not exist.
            GateError: If it did not pass its gates and ``force`` is false.
            PromotionError: If ``force`` comes without a reason.
        """
        return _promote.promote_version(self, version, reason=reason, force=force)

    def rollback(self, *, reason: str | None = None) -> AliasChange:
        """Point ``champion`` back at the previous champion.

        Raises:
            PromotionError: If there is no previous champion to go back to.
        """
        return _promote.rollback(self, reason=reason)

    def history(self) -> AuditHistory:
        """Every alias change from the audit log, oldest first, with any damaged lines."""
        return _promote.history(self)

    def gates(self, version: str = "latest") -> GateReport:
        """The gate results recorded for ``version`` (a number, an alias or ``latest``).

        Raises:
            ModelNotFoundError: If the version does not exist.
            RegistryError: If it has no gate results (trained before gates existed).
        """
        return _promote.read_gates(self, version)

    def model_card(self, version: str = "champion", directory: str | Path | None = None
                   ) -> Path:
        """Fetch ``version``'s model card into ``directory`` (default
        ``.flywheel/cards/v<N>``); returns the path of its HTML page.

        Raises:
            ModelNotFoundError: If the version does not exist.
            RegistryError: If it has no model card.
        """
        return _promote.fetch_model_card(self, version, directory)

    def monitor(self, data: str | Path | None = None, *, last: int | None = None,
                since: str | dt.datetime | None = None, until: str | dt.datetime | None = None,
                version: str | None = None, report: str | Path | None | bool = None,
                log_to_mlflow: bool = True, send_alerts: bool = True) -> MonitorResult:
        """Monitor a window against the serving version: drift, data quality, performance
        (measured with labels, estimated without), operational health; send alerts, log the
        metrics to MLflow and write the HTML report. See ``pipelines.monitor``.

        Args:
            data: A data file to monitor instead of the prediction log.
            last: The last N rows (default: ``monitoring.window_rows`` of the log).
            since, until: A time range: datetimes, ISO text or durations back from now
                (``"6h"``).
            version: Version or alias compared against (default ``monitoring.version``).
            report: HTML report path; None: ``monitoring.report``; False: no report.

        Raises:
            MonitoringError: For bad window bounds or a version with no reference.
            ModelNotFoundError: If the version does not exist.
            ConfigError: For an alert rule on an unknown metric.
        """
        request = _monitor.WindowRequest(
            data=Path(data) if data is not None else None, last=last,
            since=_monitor.parse_time(since) if isinstance(since, str) else since,
            until=_monitor.parse_time(until) if isinstance(until, str) else until)
        return _monitor.monitor_project(self, request, version=version, report=report,
                               log_to_mlflow=log_to_mlflow, send_alerts=send_alerts)


def _init_comments(y: pd.Series, schema: DataSchema, task: Task | None,
                   positive: str | None) -> dict[str, str]:
    shares = y.astype(str).value_counts(normalize=True).head(5)
    if task is not None:
        why = "set with --task"
    elif schema.task == "regression":
        why = f"inferred: numeric with {y.nunique()} distinct values"
    else:
        dist = ", ".join(f"{k!r} {v:.1%}" for k, v in shares.items())
        why = f"inferred: {y.nunique()} classes ({dist})"
    excluded = "\n#   ".join(f"{n} ({c.role}: {c.reason})"
                              for n, c in schema.excluded_columns.items())
    comments = {"task": f"{why}; binary | multiclass | regression", "excluded": excluded}
    if positive is not None:
        comments["positive_class"] = "inferred; the label whose probability is predicted"
    return comments


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when it lies inside, else absolute.

    Compared as written first: a data file that is a symlink inside the project stays
    relative, though its target lies elsewhere.
    """
    plain = Path(os.path.abspath(path.expanduser()))
    for inside, folder in ((plain, Path(os.path.abspath(root))),
                           (plain.resolve(), root.resolve())):
        try:
            return inside.relative_to(folder).as_posix()
        except ValueError:
            continue
    return str(plain.resolve())


def _delimiter(path: Path, encoding: str) -> str | None:
    """The delimiter init writes into the spec: the one read from a CSV header unless ','."""
    if path.suffix.lower() in (".parquet", ".pq") or ".tsv" in path.suffixes:
        return None
    found = sniff_delimiter(path, encoding)
    return None if found == "," else found


def _short(fingerprint: str) -> str:
    return fingerprint.split(":")[-1][:16]



