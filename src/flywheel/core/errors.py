"""The one tree of flywheel errors.

FlywheelError
 ├─ ConfigError                  flywheel.yaml or schema.yaml is wrong          (exit 2)
 ├─ DataError                    a data file cannot be read as a table          (exit 2)
 │   └─ DataValidationError      data read fine but fails the validation gate   (exit 1)
 ├─ WorkspaceError               .flywheel/ cannot be used                       (exit 2)
 │   ├─ WorkspaceBusyError       another command holds the workspace lock        (exit 2)
 │   ├─ CoordinationError        the shared coordination database is unreachable (exit 2)
 │   └─ BackupError              a backup cannot be taken, or is corrupt or partial (exit 2)
 ├─ TrainingError                training could not produce a model              (exit 1)
 ├─ CompileError                 a model has a step the serving fast path lacks  (exit 1)
 │   └─ OnnxExportError          a model cannot be converted to ONNX or verified (exit 1)
 ├─ ExplanationError             a model's predictions cannot be explained exactly (exit 1)
 ├─ GateError                    a version failed its gates; promotion refuses it (exit 1)
 ├─ MonitoringError              a window cannot be monitored as asked           (exit 2)
 ├─ FeatureStoreError            a feature view cannot be read, joined or served (exit 2)
 ├─ StoreUnreachableError        a database (the Optuna study's) cannot be used  (exit 2)
 ├─ ServingError                 the prediction service cannot start as asked    (exit 2)
 │   └─ StreamError              a stream's broker cannot be read or written     (exit 2)
 ├─ RolloutError                 a rollout cannot start or change as asked       (exit 2)
 │   └─ RolloutConflictError     another rollout of the model is running         (exit 2)
 └─ RegistryError                the MLflow tracking store or registry failed    (exit 1)
     ├─ TrackingUnreachableError the tracking server or store cannot be reached  (exit 2)
     ├─ PromotionError           an alias change that cannot be made as asked    (exit 2)
     ├─ ModelNotFoundError       no such model version or alias                  (exit 2)
     ├─ ModelIntegrityError      a model's files changed since it was logged     (exit 1)
     └─ ModelSerializationError  a model cannot be saved or loaded safely        (exit 1)

Every message says what happened, what was expected, and what to try. ``exit_code`` is what
the CLI exits with; HTTP status mapping lives in the serving layer.
"""

from __future__ import annotations

from pathlib import Path


class FlywheelError(Exception):
    """Base of every error flywheel raises on purpose."""

    exit_code: int = 1


class ConfigError(FlywheelError):
    """A configuration file or option is invalid."""

    exit_code = 2

    def __init__(self, message: str, *, path: Path | str | None = None,
                 problems: list[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.problems = list(problems or [])
        where = f"{self.path}: " if self.path is not None else ""
        text = where + message
        if self.problems:
            text += "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


class DataError(FlywheelError):
    """A data file is missing, unreadable, or not a table flywheel can use."""

    exit_code = 2

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(where + message)


class DataValidationError(DataError):
    """Data was read but fails the validation gate.

    Carries the full report so callers can show every failed check.
    """

    exit_code = 1

    def __init__(self, report: object, *, path: Path | str | None = None,
                 hint: str = "run `flywheel validate` for the details") -> None:
        self.report = report
        errors = getattr(report, "errors", [])
        names = ", ".join(sorted({f.where for f in errors})) or "the data"
        super().__init__(
            f"data failed {len(errors)} validation check(s) ({names}); {hint}.", path=path
        )


class WorkspaceError(FlywheelError):
    """The workspace directory cannot be created or written."""

    exit_code = 2


class WorkspaceBusyError(WorkspaceError):
    """Another flywheel command holds the workspace lock."""

    def __init__(self, lock_name: str, holder: str, waited: float) -> None:
        self.lock_name, self.holder, self.waited = lock_name, holder, waited
        super().__init__(
            f"The workspace is busy: {holder} holds the {lock_name!r} lock "
            f"(waited {waited:.0f} s). Wait for it to finish and run the command again."
        )


class CoordinationError(WorkspaceError):
    """The shared coordination store (PostgreSQL) cannot be used."""

    def __init__(self, where: str, problem: str, *, hint: str | None = None) -> None:
        self.where, self.problem = where, problem
        super().__init__(
            f"The coordination database {where} cannot be used: {problem}. "
            + (hint or "Check that the database is running and reachable from this host, and "
               "the user, password and database name in coordination.uri (or "
               "tracking.tracking_uri).")
        )


class BackupError(WorkspaceError):
    """A workspace backup cannot be taken or restored: a shared back end, or an archive that
    is corrupt, partial or not a flywheel backup."""


class TrainingError(FlywheelError):
    """Training could not produce a model."""

    exit_code = 1


class CompileError(FlywheelError):
    """A fitted model has a step the serving fast path cannot reproduce exactly.

    Callers catch it and serve through the scikit-learn pipeline instead.
    """

    exit_code = 1

    def __init__(self, step: str, estimator: str, reason: str) -> None:
        self.step, self.estimator, self.reason = step, estimator, reason
        super().__init__(
            f"Cannot compile step {step!r} ({estimator}) for the fast serving path: {reason}. "
            "Predictions still work through the scikit-learn pipeline, only slower; to get the "
            "fast path, build features with flywheel's feature pipeline and use a LightGBM, "
            "linear or other scikit-learn estimator."
        )


class OnnxExportError(CompileError):
    """A model version cannot be converted to ONNX, or its ONNX form does not reproduce it.

    ``step`` is the pipeline step (``features/target/encode``, ``model``) that failed.
    """

    def __init__(self, step: str, estimator: str, reason: str) -> None:
        self.step, self.estimator, self.reason = step, estimator, reason
        FlywheelError.__init__(
            self,
            f"Cannot export step {step!r} ({estimator}) to ONNX: {reason}. The version still "
            "serves through its compiled or scikit-learn form; for an ONNX form, build features "
            "with flywheel's feature pipeline and train a LightGBM or linear scikit-learn "
            "learner (custom learners have no ONNX converter)."
        )

class ExplanationError(FlywheelError):
    """A model version's predictions cannot be split exactly into per-column contributions
    (an estimator without exact tree contributions, a feature step not traced to a column)."""

    exit_code = 1

    def __init__(self, version: str, reason: str) -> None:
        self.version, self.reason = version, reason
        super().__init__(
            f"Cannot explain {version}: {reason}. Explanations are exact tree contributions, "
            "so they need a LightGBM, XGBoost or CatBoost model on flywheel's feature "
            "pipeline; predictions still work, and `training.learners: [lightgbm]` trains an "
            "explainable model.")


class RegistryError(FlywheelError):
    """The MLflow tracking store or model registry failed."""

    exit_code = 1


class TrackingUnreachableError(RegistryError):
    """The MLflow tracking server does not answer, or the tracking store cannot be opened."""

    exit_code = 2

    def __init__(self, uri: str, reason: str, *, attempts: int = 1, waited: float = 0.0,
                 hint: str | None = None) -> None:
        self.uri, self.reason, self.attempts, self.waited = uri, reason, attempts, waited
        tries = f" after {attempts} attempt(s) over {waited:.1f} s" if attempts > 1 else ""
        verb = "opened" if uri.startswith("sqlite:") else "reached"
        super().__init__(
            f"The MLflow tracking store {uri} cannot be {verb} ({reason}){tries}. "
            + (hint or "Check tracking.tracking_uri in flywheel.yaml and that the server is "
               "running; tracking.retries and tracking.connect_timeout_seconds set how long "
               "flywheel waits for it.")
        )


class StoreUnreachableError(FlywheelError):
    """A database flywheel keeps state in (the Optuna study's) refuses or does not answer.

    ``uri`` is shown with its password masked; ``hint`` says what to check.
    """

    exit_code = 2

    def __init__(self, what: str, uri: str, reason: str, *, hint: str,
                 attempts: int = 1) -> None:
        self.what, self.uri, self.reason, self.hint = what, uri, reason, hint
        self.attempts = attempts
        tries = f" after {attempts} attempt(s)" if attempts > 1 else ""
        super().__init__(f"The {what} {uri} cannot be used ({reason}){tries}. {hint}")


class GateError(FlywheelError):
    """A version failed (or never ran) its validation gates, so it may not become champion."""

    exit_code = 1

    def __init__(self, name: str, version: str, failed: list[str]) -> None:
        self.name, self.version, self.failed = name, version, list(failed)
        shown = "; ".join(self.failed[:5]) + ("; ..." if len(self.failed) > 5 else "")
        super().__init__(
            f"Model {name!r} version {version} did not pass its gates ({shown}), so it cannot "
            f"become champion. `flywheel gates {version}` shows every result; to promote it "
            f"anyway, run `flywheel promote {version} --force --reason \"...\"` (the reason "
            "goes to the audit log)."
        )


class FeatureStoreError(FlywheelError):
    """A feature view's source, a point-in-time join, materialization or the online store
    failed; the message names the view and what to check."""

    exit_code = 2


class ServingError(FlywheelError):
    """The prediction service cannot start as asked (a port it cannot listen on, a missing
    optional engine); the message names the option to change."""

    exit_code = 2


class StreamError(ServingError):
    """The broker `flywheel stream` reads from or writes to failed (connection lost, a
    timeout); the scorer retries, and nothing unacknowledged is lost."""

    def __init__(self, where: str, problem: str) -> None:
        self.where, self.problem = where, problem
        super().__init__(f"The stream broker {where} failed: {problem}. Pending events stay "
                         "pending and are scored once it answers again; check that the server "
                         "is up and reachable.")


class MonitoringError(FlywheelError):
    """A window cannot be monitored as asked (bad window bounds, no reference for the version).

    Problems inside a window (no rows, a missing column, a corrupt log segment) are not errors:
    the report is partial and says what it could not compute.
    """

    exit_code = 2


class RolloutError(FlywheelError):
    """A rollout cannot start, change or stop as asked; the message gives the reason."""

    exit_code = 2


class RolloutConflictError(RolloutError):
    """Another rollout of the model is running, and only one may run at a time."""

    def __init__(self, name: str, kind: str, version: str, since: str) -> None:
        self.name, self.kind, self.version, self.since = name, kind, version, since
        super().__init__(
            f"Model {name!r} already has a {kind} rollout of version {version} running (since "
            f"{since}); only one rollout runs at a time. `flywheel rollout status` shows it; "
            "`flywheel rollout stop` ends it (traffic returns to the champion)."
        )


class PromotionError(RegistryError):
    """An alias change cannot be made as asked (nothing to roll back to, no reason given)."""

    exit_code = 2


class ModelNotFoundError(RegistryError, LookupError):
    """A model version or alias does not exist in the registry."""

    exit_code = 2

    def __init__(self, name: str, ref: str | None = None, *, versions: list[str] | None = None,
                 aliases: dict[str, str] | None = None) -> None:
        self.name, self.ref = name, ref
        self.versions = list(versions or [])
        self.aliases = dict(aliases or {})
        if ref is None:
            which = "any version"
        elif ref.isdigit():
            which = f"version {ref}"
        else:
            which = f"alias {ref!r}"
        if self.versions:
            shown = ", ".join(self.versions[:10]) + (", ..." if len(self.versions) > 10 else "")
            exists = f"it has version(s) {shown}"
            if self.aliases:
                exists += " and alias(es) " + ", ".join(
                    f"{a} = {v}" for a, v in sorted(self.aliases.items()))
            hint = f"{exists}. `flywheel models` lists versions."
        else:
            hint = "it has no versions yet; `flywheel train` registers the first one."
        super().__init__(f"Model {name!r} has no {which} in the registry; {hint}")


class ModelIntegrityError(RegistryError):
    """A registered model's files no longer match what was logged, or cannot be verified."""

    def __init__(self, name: str, version: str, problem: str) -> None:
        self.name, self.version, self.problem = name, version, problem
        super().__init__(
            f"Model {name!r} version {version} failed its integrity check: {problem}. "
            "flywheel refuses to load it, since a changed model file can run code or predict "
            "wrongly. Restore the artifacts from a backup, or train and register a new version "
            "with `flywheel train`."
        )


class ModelSerializationError(RegistryError):
    """A model cannot be saved with skops, or is saved with pickle and pickle is not allowed."""

    def __init__(self, model: str, reason: str, *, loading: bool = False) -> None:
        self.model, self.reason, self.loading = model, reason, loading
        if loading:
            text = (
                f"{model} was saved with pickle, which runs code on load, and flywheel does not "
                f"load pickle unless told to ({reason}). If you trust where it came from, set "
                "training.allow_pickle: true (or pass allow_pickle=True) and load it again."
            )
        else:
            text = (
                f"skops cannot serialize {model} ({reason}); flywheel saves models with skops so "
                "that loading them cannot run code. Replace the unsupported part (for example a "
                "lambda in a FunctionTransformer) with a function defined at module level, or set "
                "training.allow_pickle: true to save it with pickle, which runs code on load."
            )
        super().__init__(text)
