"""The project spec: ``flywheel.yaml`` as typed, frozen pydantic models.

Every field has a default except what only the user can know (the data and the target).
Loading turns pydantic's errors into one line per problem that names the path and the rule
(``training.search.trials: must be >= 1, got 0``) and suggests the nearest valid key for a typo.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from flywheel.core._coordination_spec import FILE_COORDINATION as FILE_COORDINATION
from flywheel.core._coordination_spec import CoordinationSpec as CoordinationSpec
from flywheel.core._deploy_spec import ComputeSpec as ComputeSpec
from flywheel.core._deploy_spec import DeploySpec as DeploySpec
from flywheel.core._deploy_spec import KServeSpec as KServeSpec
from flywheel.core._ensemble_spec import EnsembleSpec as EnsembleSpec
from flywheel.core._feature_store_spec import FeatureStoreSpec as FeatureStoreSpec
from flywheel.core._feature_store_spec import FeatureViewSpec as FeatureViewSpec
from flywheel.core._feature_store_spec import SpineSpec as SpineSpec
from flywheel.core._monitoring_spec import AlertSinkSpec as AlertSinkSpec
from flywheel.core._monitoring_spec import AlertsSpec as AlertsSpec
from flywheel.core._monitoring_spec import DriftSpec as DriftSpec
from flywheel.core._monitoring_spec import MonitoringSpec as MonitoringSpec
from flywheel.core._monitoring_spec import RuleSpec as RuleSpec
from flywheel.core._retraining_spec import RetrainingSpec
from flywheel.core._rollout_spec import ABSpec as ABSpec
from flywheel.core._rollout_spec import BanditSpec as BanditSpec
from flywheel.core._rollout_spec import BlueGreenSpec as BlueGreenSpec
from flywheel.core._rollout_spec import CanarySpec as CanarySpec
from flywheel.core._rollout_spec import OutcomeMetric as OutcomeMetric
from flywheel.core._rollout_spec import RolloutKind as RolloutKind
from flywheel.core._rollout_spec import RolloutLimits as RolloutLimits
from flywheel.core._rollout_spec import RolloutSpec as RolloutSpec
from flywheel.core._rollout_spec import ShadowSpec as ShadowSpec
from flywheel.core._section import Condition, ConditionOp, parse_bound
from flywheel.core._section import Section as _Section
from flywheel.core._serving_spec import ServingSpec as ServingSpec
from flywheel.core.errors import ConfigError
from flywheel.core.yamlio import read_yaml

Task = Literal["binary", "multiclass", "regression"]
Severity = Literal["error", "warning", "off"]

SPEC_FILE = "flywheel.yaml"
_M = TypeVar("_M", bound=BaseModel)
_RAY_ADDRESS = re.compile(r"^(ray://)?[\w.-]+:\d{1,5}$")


class DataSpec(_Section):
    path: str
    """Training data, CSV or Parquet; relative paths are relative to flywheel.yaml."""
    schema_file: str = "schema.yaml"
    """The human-editable schema written by `flywheel init`."""
    format: Literal["auto", "csv", "parquet"] = "auto"
    """File format; `auto` decides by extension."""
    encoding: str = "utf-8"
    """Text encoding of CSV files."""
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    """Field delimiter of CSV files; null: read from the header (one of , ; tab |)."""
    time_column: str | None = None
    """A column that orders rows in time; enables time-ordered splits."""
    spine: SpineSpec | None = None
    """`path` is a spine (entity keys, event times, labels): training joins the feature views
    to it as of each row's event time (see feature_store)."""


class TargetSpec(_Section):
    column: str
    """The column to predict."""
    task: Task
    """binary, multiclass or regression."""
    positive_class: str | None = None
    """For binary tasks: the label counted as positive (metrics, probabilities)."""


class CheckSeverity(_Section):
    """How each validation check counts: an error fails the gate, a warning is reported."""

    missing_column: Severity = "error"
    extra_column: Severity = "warning"
    dtype: Severity = "error"
    null_rate: Severity = "error"
    out_of_range: Severity = "error"
    unseen_category: Severity = "error"
    duplicate_rows: Severity = "warning"
    empty: Severity = "error"
    target: Severity = "error"


class ValidationSpec(_Section):
    max_unseen_category_rate: float = Field(0.01, ge=0.0, le=1.0)
    """Share of a categorical column's rows allowed to hold categories not in the schema."""
    max_out_of_range_rate: float = Field(0.0, ge=0.0, le=1.0)
    """Share of a numeric column's values allowed outside the schema's [min, max]."""
    max_duplicate_rate: float = Field(0.0, ge=0.0, le=1.0)
    """Share of rows allowed to repeat an earlier row exactly."""
    severity: CheckSeverity = CheckSeverity()
    """Per check: error, warning or off."""


ParamType = Literal["int", "float", "categorical"]


class ParamSpace(_Section):
    """One hyper-parameter's search range."""

    type: ParamType
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[str | int | float | bool | None] | None = None

    @model_validator(mode="after")
    def _check_range(self) -> ParamSpace:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty `choices` list")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"an {self.type} parameter needs `low` <= `high`")
        elif self.log and self.low <= 0:
            raise ValueError("a log-scaled parameter needs `low` > 0")
        return self


class CustomLearnerSpec(_Section):
    """Any scikit-learn-compatible estimator, by import path, with its search space."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    estimator: str
    """Import path such as sklearn.ensemble.ExtraTreesClassifier."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Fixed constructor arguments."""
    search_space: dict[str, ParamSpace] = Field(default_factory=dict)
    scale_numeric: bool = False
    """Standardize numeric features for this learner (linear models, SVMs, k-NN)."""

    @field_validator("estimator")
    @classmethod
    def _check_import_path(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*\.[A-Za-z_]\w*", value):
            raise ValueError("must be an import path such as sklearn.ensemble.ExtraTreesClassifier")
        return value


class SearchSpec(_Section):
    trials: int | None = Field(30, ge=1)
    """Number of Optuna trials in the study (a rerun resumes it); null: as many as fit in
    timeout_seconds."""
    timeout_seconds: float | None = Field(None, gt=0)
    """Wall-clock budget of the search, a hard limit: a trial still running at the deadline is
    stopped. Whichever of trials and timeout comes first ends the search."""
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    parallel: int = Field(1, ge=1, le=64)
    """Trials run at once, in separate processes sharing the study storage (backend local)."""
    backend: Literal["local", "ray"] = "local"
    """local: trials run in processes on this machine; ray: in Ray tasks (pip install
    flywheel[ray]), each running Optuna on the shared study."""
    ray_address: str | None = None
    """backend ray: null starts a local Ray for the run; auto joins the cluster this machine
    belongs to; ray://HOST:PORT (Ray Client) or HOST:PORT (the head's GCS) names one."""
    workers: int = Field(2, ge=1, le=256)
    """backend ray: Ray tasks running trials at once, one CPU each."""
    seed: int = 0
    pruning: bool = True
    """Stop unpromising trials early on their per-fold scores."""
    defaults_first: bool = True
    """A new study's first trials are each built-in learner's known-good parameters (after a
    retraining's warm start), before the sampler explores; not with the grid sampler."""
    storage: str = Field("auto", min_length=1)
    """Where the Optuna study lives: auto (.flywheel/optuna.db, or the tracking database
    when tracking.tracking_uri is postgresql://), an RDB URL (postgresql://..., ${VAR}
    expands) or journal:PATH (a journal file, relative to flywheel.yaml)."""

    @field_validator("storage")
    @classmethod
    def _check_storage(cls, value: str) -> str:
        if value == "auto" or value.startswith("journal:") or "://" in value:
            if value == "journal:":
                raise ValueError("journal: needs a file path, such as journal:.flywheel/study.log")
            return value
        raise ValueError(f"must be auto, an RDB URL (postgresql://..., sqlite:///...) or "
                         f"journal:PATH, got {value!r}")

    @model_validator(mode="after")
    def _check_budget(self) -> SearchSpec:
        if self.trials is None and self.timeout_seconds is None:
            raise ValueError("trials: null searches until timeout_seconds, which is null too; "
                             "set a number of trials or a time budget")
        return self

    @field_validator("ray_address")
    @classmethod
    def _check_ray_address(cls, value: str | None) -> str | None:
        if value is None or value == "auto" or _RAY_ADDRESS.match(value):
            return value
        raise ValueError(f"must be null (a local Ray for the run), auto, ray://HOST:PORT or "
                         f"HOST:PORT, got {value!r}")


class TrainingSpec(_Section):
    metric: str | None = None
    """Metric to optimize; defaults to roc_auc (binary), log_loss (multiclass), rmse
    (regression)."""
    cv_folds: int = Field(5, ge=2, le=20)
    holdout_fraction: float = Field(0.2, gt=0.0, lt=0.9)
    holdout_seed: int = 0
    """Seed of the random holdout split, apart from search.seed: retraining with another seed
    keeps the same holdout, so the champion comparison runs on rows neither model trained on."""
    learners: list[str] = Field(default_factory=lambda: ["lightgbm"], min_length=1)
    """Built-in learners to search over: lightgbm, linear, random_forest,
    hist_gradient_boosting, xgboost and catboost (the last two with ``pip install
    "flywheel[xgboost]"`` / ``"flywheel[catboost]"``); plus the names of custom_learners."""
    custom_learners: list[CustomLearnerSpec] = Field(default_factory=list)
    search: SearchSpec = SearchSpec()
    ensemble: EnsembleSpec = EnsembleSpec()
    """Greedy ensemble selection over the search's trials (``size: 1``: the single best)."""
    allow_pickle: bool = False
    """Allow a model that skops cannot serialize to be saved with pickle (loading it can run
    arbitrary code)."""


Encoding = Literal["auto", "one_hot", "target", "ordinal", "drop"]
Impute = Literal["median", "mean", "zero", "none"]


class ColumnFeatureSpec(_Section):
    """Per-column override of the feature pipeline."""

    encoding: Encoding = "auto"
    """Categorical columns: auto picks one_hot up to one_hot_max_categories, else target."""
    impute: Impute | None = None
    """Numeric columns: how to fill missing values (defaults to features.impute)."""
    scale: bool | None = None
    """Numeric columns: standardize (defaults to what the learner needs)."""


class FeaturesSpec(_Section):
    one_hot_max_categories: int = Field(12, ge=2)
    """Categorical columns with more categories than this use high_cardinality encoding."""
    high_cardinality: Literal["target", "ordinal"] = "target"
    impute: Impute = "median"
    columns: dict[str, ColumnFeatureSpec] = Field(default_factory=dict)
    """Overrides by column name."""


ThresholdOp = ConditionOp


class ThresholdSpec(Condition):
    """An absolute bound on a metric, such as roc_auc >= 0.80.

    ``metric`` is a holdout metric (roc_auc, rmse, ...; or holdout_roc_auc), a cross-validated
    one (cv_roc_auc) or its spread across folds (cv_roc_auc_std)."""


class ChampionGateSpec(_Section):
    """The challenger against the current champion, on the same holdout rows."""

    mode: Literal["not_worse", "better", "off"] = "not_worse"
    """not_worse: the interval of the gain lies above -margin; better: above +margin."""
    metric: str | None = None
    """Metric compared; defaults to training.metric."""
    margin: Annotated[float, Field(ge=0.0)] | Literal["auto"] = "auto"
    """In the metric's units: how much worse (not_worse) or how much better (better). auto:
    scaled to what the holdout can resolve. not_worse takes the larger of 0.005 and the
    interval's width, so a small holdout fails only a challenger it shows to be worse (the
    whole interval below zero) and a large one holds it within 0.005; better takes 0 (the
    interval above zero). A rollout then judges what a small holdout cannot."""
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    """Level of the two-sided confidence interval of the gain."""
    method: Literal["auto", "bootstrap", "delong"] = "auto"
    """auto: DeLong's test for ROC AUC of a binary task, a paired bootstrap otherwise."""
    bootstrap: int = Field(1000, ge=100, le=100_000)
    """Bootstrap resamples."""
    min_rows: int = Field(100, ge=10)
    """Fewest holdout rows the champion never trained on for the comparison to count."""


class FairnessSpec(_Section):
    """Per-group metrics and their largest gap, for each sensitive column."""

    sensitive_columns: list[str] = Field(default_factory=list)
    """Columns naming groups (need not be features); empty turns the gate off."""
    max_gap: float = Field(0.1, ge=0.0)
    """Largest allowed demographic parity and equalized odds difference (binary), accuracy
    gap (multiclass), or per-group MAE gap relative to the overall MAE (regression)."""
    min_group_rows: int = Field(30, ge=1)
    """Groups with fewer holdout rows are reported but do not count toward the gap."""


class GatesSpec(_Section):
    """Checks run on the holdout after training; a version that fails one is not promoted."""

    thresholds: list[ThresholdSpec] = Field(default_factory=list)
    """Absolute bounds: a mapping {roc_auc: ">= 0.80"} or a list of {metric, op, value}."""
    champion: ChampionGateSpec = ChampionGateSpec()
    cv_std_max: float | None = Field(None, ge=0.0)
    """Largest standard deviation of the training metric across CV folds; null: no limit."""
    latency_p99_ms: float | None = Field(10.0, gt=0.0)
    """Budget of single-row prediction latency in process, 99th percentile; null: off."""
    robustness: bool = True
    """Predictions stay finite and in range under missing values, unseen categories,
    extreme numbers and shuffled column order."""
    fairness: FairnessSpec = FairnessSpec()

    @field_validator("thresholds", mode="before")
    @classmethod
    def _thresholds_from_mapping(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return [parse_bound(metric, rule) for metric, rule in value.items()]


class PromotionSpec(_Section):
    auto: bool = False
    """Promote a version to champion right after training when it passes every gate;
    otherwise it waits as challenger."""


class TrackingSpec(_Section):
    tracking_uri: str | None = None
    """MLflow tracking URI; default sqlite:///.flywheel/mlflow.db. At scale an mlflow server
    (http://HOST:PORT) or PostgreSQL directly (postgresql://USER:${PASSWORD_VAR}@HOST:PORT/DB):
    ${VAR} expands from the environment when a connection is made, and libpq's PGPASSWORD
    works too, so the spec never holds a password."""
    artifact_location: str | None = None
    """Where MLflow stores artifacts; default .flywheel/artifacts (e.g. s3://... at scale)."""
    experiment: str | None = None
    """MLflow experiment name; defaults to the project name."""
    model_name: str | None = None
    """Registered model name; defaults to the project name."""
    connect_timeout_seconds: float = Field(default=3.0, gt=0, le=300)
    """A tracking server (http:// or https://) not accepting a connection within this is
    retried, and reported at once."""
    request_timeout_seconds: int = Field(default=30, ge=1, le=3600)
    """Longest wait for one answer of a tracking server (MLflow's MLFLOW_HTTP_REQUEST_TIMEOUT)."""
    retries: int = Field(default=2, ge=0, le=10)
    """Retries of a failed connection or request to a tracking server
    (MLFLOW_HTTP_REQUEST_MAX_RETRIES); the MLFLOW_HTTP_REQUEST_* variables, if set, win."""
    backoff_seconds: int = Field(default=1, ge=0, le=120)
    """Pause before the second retry, doubling after (MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR)."""
    pool_size: int = Field(default=5, ge=1, le=100)
    """A database store (postgresql://): connections each engine keeps open per process
    (MLFLOW_SQLALCHEMYSTORE_POOL_SIZE; the Optuna storage's pool_size)."""
    max_overflow: int = Field(default=5, ge=1, le=100)
    """A database store: connections an engine may open beyond pool_size under load
    (MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW, which MLflow ignores when 0; Optuna's max_overflow)."""


class ProjectSpec(_Section):
    name: str = Field(min_length=1)
    data: DataSpec
    target: TargetSpec
    validation: ValidationSpec = ValidationSpec()
    features: FeaturesSpec = FeaturesSpec()
    training: TrainingSpec = TrainingSpec()
    tracking: TrackingSpec = TrackingSpec()
    coordination: CoordinationSpec = CoordinationSpec()
    gates: GatesSpec = GatesSpec()
    promotion: PromotionSpec = PromotionSpec()
    rollout: RolloutSpec = RolloutSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    serving: ServingSpec = ServingSpec()
    retraining: RetrainingSpec = RetrainingSpec()
    feature_store: FeatureStoreSpec = FeatureStoreSpec()
    deploy: DeploySpec = DeploySpec()

    _root: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def root(self) -> Path:
        """The folder holding flywheel.yaml; relative paths resolve against it."""
        return self._root

    def at(self, root: str | Path) -> ProjectSpec:
        """This spec with relative paths resolving against ``root`` (a copy)."""
        new = self.model_copy()
        new._root = Path(root).resolve()
        return new

    def resolve(self, path: str | Path) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self._root / p

    @property
    def data_path(self) -> Path:
        return self.resolve(self.data.path)

    @property
    def schema_path(self) -> Path:
        return self.resolve(self.data.schema_file)


def load_spec(path: str | Path = SPEC_FILE) -> ProjectSpec:
    """Read and check a flywheel.yaml.

    Raises:
        ConfigError: If the file is missing, is not YAML, or breaks a rule; the message lists
            every problem with its path.
    """
    path = Path(path)
    if path.is_dir():
        path = path / SPEC_FILE
    if not path.is_file():
        raise ConfigError(
            "no project spec here; run `flywheel init DATA --target COLUMN` to create one, "
            "or pass --config PATH.", path=path
        )
    raw = read_yaml(path)
    return parse_spec(raw, path=path).at(path.resolve().parent)


def parse_spec(raw: Any, *, path: Path | None = None) -> ProjectSpec:
    """Build a ProjectSpec from already-parsed YAML, with readable errors."""
    return parse_config(ProjectSpec, raw, path=path, what="spec",
                        expected="sections (name, data, target, ...)")


def parse_config(model: type[_M], raw: Any, *, path: Path | None, what: str,
                 expected: str) -> _M:
    """Validate parsed YAML into ``model``; every problem becomes one readable line.

    Raises:
        ConfigError: If ``raw`` is not a mapping or breaks a rule of ``model``.
    """
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise ConfigError(f"must be a mapping of {expected}, got {got}.", path=path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = format_validation_errors(exc, model)
        raise ConfigError(f"{len(problems)} problem(s) in the {what}:", path=path,
                          problems=problems) from exc


def format_validation_errors(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    """One readable line per pydantic error: ``dotted.path: rule, got value``."""
    return [_format_one(err, model) for err in exc.errors(include_url=False)]


def _format_one(err: Any, model: type[BaseModel]) -> str:
    loc = tuple(str(p) for p in err["loc"])
    where = ".".join(loc) or "(top level)"
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        valid = sorted(parent.model_fields) if parent is not None else []
        near = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
        hint = f"did you mean {near[0]!r}?" if near else f"valid keys: {', '.join(valid)}"
        return f"{where}: unknown key; {hint}"
    if kind == "missing":
        return f"{where}: required, but missing"
    rules: dict[str, Callable[[], str]] = {
        "greater_than_equal": lambda: f"must be >= {ctx.get('ge')}",
        "greater_than": lambda: f"must be > {ctx.get('gt')}",
        "less_than_equal": lambda: f"must be <= {ctx.get('le')}",
        "less_than": lambda: f"must be < {ctx.get('lt')}",
        "literal_error": lambda: f"must be one of {ctx.get('expected')}",
        "int_parsing": lambda: "must be an integer",
        "int_type": lambda: "must be an integer",
        "int_from_float": lambda: "must be a whole number",
        "float_parsing": lambda: "must be a number",
        "float_type": lambda: "must be a number",
        "bool_parsing": lambda: "must be true or false",
        "bool_type": lambda: "must be true or false",
        "string_type": lambda: "must be text",
        "string_too_short": lambda: "must not be empty",
        "model_type": lambda: "must be a mapping of keys",
        "dict_type": lambda: "must be a mapping of keys",
        "list_type": lambda: "must be a list",
        "too_short": lambda: "must not be empty",
        "string_pattern_mismatch": lambda: f"must match {ctx.get('pattern')}",
    }
    if kind == "value_error":
        return f"{where}: {ctx.get('error', err['msg'])}"
    rule = rules[kind]() if kind in rules else str(err["msg"]).rstrip(".").lower()
    return f"{where}: {rule}, got {_show(value)}"


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(model: type[BaseModel], loc: tuple[str, ...]) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None or part not in current.model_fields:
            return None
        current = _as_model(current.model_fields[part].annotation)
    return current


def _as_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _as_model(arg)
            if found is not None:
                return found
    return None
