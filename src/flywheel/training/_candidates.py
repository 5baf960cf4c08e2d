"""Candidate learners: the built-in ones and any scikit-learn estimator by import path.

A learner is a search space (the same ``ParamSpace`` users write in YAML for their own
estimators) plus how to build an estimator for a task from sampled parameters, whether its
numeric features need scaling, and how it stops early on a validation set if it can.

XGBoost and CatBoost are optional extras (``pip install "flywheel[xgboost]"``, ``[catboost]``):
their packages are imported only inside their build and fit functions, once the spec chooses
them, and choosing one that is not installed is a ``ConfigError`` naming the extra.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from sklearn.base import BaseEstimator

from flywheel.core.errors import ConfigError
from flywheel.core.spec import CustomLearnerSpec, ParamSpace, Task, TrainingSpec

Params = dict[str, Any]
MAX_BOOSTING_ROUNDS = 2000
EARLY_STOPPING_ROUNDS = 50

FitEarly = Callable[[Any, Any, Any, Any, Any], int]
"""(estimator, x_train, y_train, x_valid, y_valid) -> the best number of boosting rounds; the
estimator is fitted, stopping once the validation score has not improved for
``EARLY_STOPPING_ROUNDS`` rounds, and predicts with its best round."""


@dataclasses.dataclass(frozen=True)
class Learner:
    """One candidate model family: a search space and how to build the estimator."""

    name: str
    space: dict[str, ParamSpace]
    build: Callable[[Params, Task, int, int], BaseEstimator]
    """(params, task, seed, n_jobs) -> an unfitted estimator."""
    scale_numeric: bool = False
    fit_early: FitEarly | None = None
    """How it fits with early stopping on a validation set; None: it cannot."""
    package: str | None = None
    """The module it needs that flywheel does not depend on, installed by ``extra``."""
    extra: str | None = None
    defaults: Params | None = None
    """Known-good parameters (inside ``space``) a new study tries first for this learner,
    with ``training.search.defaults_first``; None: it starts from what the sampler draws."""
    nonnegative_space: dict[str, ParamSpace] | None = None
    """Added to ``space`` for a regression whose target is never negative (counts, prices,
    amounts): the losses that suit such a target, whose first choice joins ``defaults``."""

    @property
    def early_stopping(self) -> bool:
        """Whether the search stops it early, and the refit takes ``n_estimators`` rounds."""
        return self.fit_early is not None

    def suggest(self, trial: optuna.Trial, *, grid: bool = False) -> Params:
        """Sample this learner's parameters; Optuna names are prefixed with the learner's name.

        With ``grid``, each numeric range is tried at its ends and (geometric) middle.
        """
        return {name: _suggest(trial, f"{self.name}.{name}", space, grid=grid)
                for name, space in self.space.items()}

    @property
    def nonnegative_defaults(self) -> Params:
        """The first choice of each ``nonnegative_space`` parameter (LightGBM: squared error),
        what the learner used before it searched them."""
        return {name: _grid(space)[0] for name, space in (self.nonnegative_space or {}).items()}

    def for_target(self, nonnegative: bool) -> Learner:
        """This learner for a target that is (``nonnegative``) or may be negative."""
        if not nonnegative or not self.nonnegative_space:
            return self
        return dataclasses.replace(
            self, space={**self.space, **self.nonnegative_space},
            defaults=None if self.defaults is None
            else {**self.defaults, **self.nonnegative_defaults})

    def grid_values(self) -> dict[str, list[Any]]:
        """The grid sampler's values for each (prefixed) parameter."""
        return {f"{self.name}.{name}": _grid(space) for name, space in self.space.items()}


def _space(kind: str, low: float | None = None, high: float | None = None, *,
           log: bool = False) -> ParamSpace:
    return ParamSpace(type=kind, low=low, high=high, log=log)  # type: ignore[arg-type]


def _suggest(trial: optuna.Trial, name: str, space: ParamSpace, *, grid: bool) -> Any:
    if space.type == "categorical" or grid:
        return trial.suggest_categorical(name, _grid(space))
    if space.type == "int":
        return trial.suggest_int(name, int(space.low or 0), int(space.high or 0), log=space.log)
    return trial.suggest_float(name, float(space.low or 0.0), float(space.high or 0.0),
                               log=space.log)


def _grid(space: ParamSpace) -> list[Any]:
    if space.type == "categorical":
        return list(space.choices or [])
    low, high = float(space.low or 0.0), float(space.high or 0.0)
    middle = (low * high) ** 0.5 if space.log else (low + high) / 2
    if space.type == "int":
        return sorted({int(round(v)) for v in (low, middle, high)})
    return sorted({low, middle, high})


def _lightgbm_build(params: Params, task: Task, seed: int, n_jobs: int) -> BaseEstimator:
    import lightgbm as lgb

    settings = {
        "n_estimators": MAX_BOOSTING_ROUNDS,
        "subsample_freq": 1,
        "random_state": seed,
        "n_jobs": n_jobs,
        "verbosity": -1,
        "deterministic": True,
        "force_row_wise": True,
        **params,
    }
    if task == "regression":
        return lgb.LGBMRegressor(**settings)
    return lgb.LGBMClassifier(**settings)


@functools.cache
def _lightgbm_eval_xy() -> bool:
    from lightgbm import LGBMModel

    return "eval_X" in inspect.signature(LGBMModel.fit).parameters


def _lightgbm_fit(estimator: Any, x_train: Any, y_train: Any, x_valid: Any, y_valid: Any) -> int:
    import lightgbm as lgb

    stop = [lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)]
    if _lightgbm_eval_xy():  # LightGBM >= 4.7 deprecates eval_set
        estimator.fit(x_train, y_train, eval_X=(x_valid,), eval_y=(y_valid,), callbacks=stop)
    else:
        estimator.fit(x_train, y_train, eval_set=[(x_valid, y_valid)], callbacks=stop)
    return int(estimator.best_iteration_ or estimator.n_estimators)


def _xgboost_build(params: Params, task: Task, seed: int, n_jobs: int) -> BaseEstimator:
    xgb = _optional("xgboost", "xgboost")
    settings = {
        "n_estimators": MAX_BOOSTING_ROUNDS,
        "tree_method": "hist",
        "random_state": seed,
        "n_jobs": n_jobs,
        "verbosity": 0,
        **params,
    }
    if task == "regression":
        return xgb.XGBRegressor(**settings)
    return xgb.XGBClassifier(**settings)


def _xgboost_fit(estimator: Any, x_train: Any, y_train: Any, x_valid: Any, y_valid: Any) -> int:
    # Set here, not in the build: the refit has no validation set, and XGBoost refuses early
    # stopping without one.
    estimator.set_params(early_stopping_rounds=EARLY_STOPPING_ROUNDS)
    estimator.fit(x_train, y_train, eval_set=[(x_valid, y_valid)], verbose=False)
    return int(estimator.best_iteration) + 1  # XGBoost counts rounds from 0


def _catboost_build(params: Params, task: Task, seed: int, n_jobs: int) -> BaseEstimator:
    cb = _optional("catboost", "catboost")
    settings = {
        "n_estimators": MAX_BOOSTING_ROUNDS,
        # subsample needs a bootstrap that samples rows; CatBoost's default on CPU (MVS)
        # weights them instead, and Bayesian takes bagging_temperature.
        "bootstrap_type": "Bernoulli",
        "random_seed": seed,
        "thread_count": n_jobs,
        "verbose": False,
        "allow_writing_files": False,  # no catboost_info/ in the working directory
        **params,
    }
    if task == "regression":
        return cb.CatBoostRegressor(**settings)
    return cb.CatBoostClassifier(**settings)


def _catboost_fit(estimator: Any, x_train: Any, y_train: Any, x_valid: Any, y_valid: Any) -> int:
    # use_best_model (on with an eval_set) keeps the trees up to the best iteration.
    estimator.fit(x_train, y_train, eval_set=(x_valid, y_valid),
                  early_stopping_rounds=EARLY_STOPPING_ROUNDS)
    return int(estimator.get_best_iteration()) + 1  # CatBoost counts iterations from 0


def _optional(module: str, extra: str) -> Any:
    """Import an optional learner's package, or say which extra installs it.

    Raises:
        ConfigError: If the package is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(_missing(module, extra, f"training.learners: {extra}")) from exc


def _missing(module: str, extra: str, where: str) -> str:
    return (f"{where} needs the {module} package, which is not installed; install it with "
            f'`pip install "flywheel[{extra}]"` or choose another learner.')


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    if module in sys.modules:  # None there is how an environment blocks an import
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def _linear_build(params: Params, task: Task, seed: int, n_jobs: int) -> BaseEstimator:
    from sklearn.linear_model import LogisticRegression, Ridge

    if task == "regression":
        return Ridge(alpha=1.0 / params["C"], random_state=seed)
    return LogisticRegression(C=params["C"], max_iter=2000, random_state=seed)


def _forest_build(params: Params, task: Task, seed: int, n_jobs: int) -> BaseEstimator:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    cls = RandomForestRegressor if task == "regression" else RandomForestClassifier
    return cls(**params, random_state=seed, n_jobs=n_jobs)


def _hgb_build(params: Params, task: Task, seed: int, n_jobs: int) -> BaseEstimator:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    return cls(**params, max_iter=500, early_stopping=True, validation_fraction=0.1,
               n_iter_no_change=20, random_state=seed)


BUILTIN_LEARNERS: dict[str, Learner] = {
    "lightgbm": Learner("lightgbm", {
        "learning_rate": _space("float", 0.01, 0.3, log=True),
        "num_leaves": _space("int", 7, 255, log=True),
        "min_child_samples": _space("int", 5, 100, log=True),
        "colsample_bytree": _space("float", 0.4, 1.0),
        "subsample": _space("float", 0.5, 1.0),
        "reg_alpha": _space("float", 1e-8, 10.0, log=True),
        "reg_lambda": _space("float", 1e-8, 10.0, log=True),
    }, _lightgbm_build, fit_early=_lightgbm_fit, defaults={
        "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20,
        "colsample_bytree": 0.9, "subsample": 1.0, "reg_alpha": 1e-8, "reg_lambda": 1e-8,
    # Squared error or a log-link loss: for a right-skewed non-negative target a Poisson or
    # Tweedie fit often has the lower RMSE (diamonds' price: 522 against 532 with LightGBM's
    # defaults in 5-fold CV). The search still scores trials by the project's metric; early
    # stopping watches the loss's own.
    }, nonnegative_space={"objective": ParamSpace(type="categorical",
                                                  choices=["regression", "poisson", "tweedie"])}),
    "xgboost": Learner("xgboost", {
        "learning_rate": _space("float", 0.01, 0.3, log=True),
        "max_depth": _space("int", 3, 10),
        "min_child_weight": _space("float", 0.1, 20.0, log=True),
        "subsample": _space("float", 0.5, 1.0),
        "colsample_bytree": _space("float", 0.4, 1.0),
        "reg_alpha": _space("float", 1e-8, 10.0, log=True),
        "reg_lambda": _space("float", 1e-8, 10.0, log=True),
    }, _xgboost_build, fit_early=_xgboost_fit, package="xgboost", extra="xgboost", defaults={
        "learning_rate": 0.1, "max_depth": 6, "min_child_weight": 1.0, "subsample": 1.0,
        "colsample_bytree": 1.0, "reg_alpha": 1e-8, "reg_lambda": 1.0,
    }),
    "catboost": Learner("catboost", {
        "learning_rate": _space("float", 0.01, 0.3, log=True),
        "depth": _space("int", 4, 10),
        "l2_leaf_reg": _space("float", 1.0, 30.0, log=True),
        "subsample": _space("float", 0.5, 1.0),
        "random_strength": _space("float", 0.1, 10.0, log=True),
    }, _catboost_build, fit_early=_catboost_fit, package="catboost", extra="catboost",
        defaults={"learning_rate": 0.08, "depth": 6, "l2_leaf_reg": 3.0, "subsample": 0.8,
                  "random_strength": 1.0}),
    "linear": Learner("linear", {"C": _space("float", 1e-4, 100.0, log=True)}, _linear_build,
                      scale_numeric=True, defaults={"C": 1.0}),
    "random_forest": Learner("random_forest", {
        "n_estimators": _space("int", 100, 500),
        "max_features": _space("float", 0.1, 1.0),
        "min_samples_leaf": _space("int", 1, 30, log=True),
        "max_depth": _space("int", 4, 32, log=True),
    }, _forest_build, defaults={"n_estimators": 300, "max_features": 0.5, "min_samples_leaf": 1,
                                "max_depth": 32}),
    "hist_gradient_boosting": Learner("hist_gradient_boosting", {
        "learning_rate": _space("float", 0.01, 0.3, log=True),
        "max_leaf_nodes": _space("int", 7, 255, log=True),
        "min_samples_leaf": _space("int", 5, 100, log=True),
        "l2_regularization": _space("float", 1e-8, 10.0, log=True),
    }, _hgb_build, defaults={"learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 20,
                             "l2_regularization": 1e-8}),
}


def nonnegative_regression(task: Task, y: np.ndarray) -> bool:
    """Whether ``y`` is a regression target with no negative value (``Learner.for_target``)."""
    return task == "regression" and len(y) > 0 and bool(np.nanmin(y) >= 0)


def resolve_learners(spec: TrainingSpec, *, nonnegative_target: bool = False) -> list[Learner]:
    """The learners named in ``spec.learners``, built-in or custom, for a target that is
    (``nonnegative_target``, ``nonnegative_regression``) or may be negative.

    Raises:
        ConfigError: If a name is unknown, a built-in learner's optional package is not
            installed, or a custom estimator cannot be imported or built.
    """
    custom = {c.name: c for c in spec.custom_learners}
    learners = []
    for name in spec.learners:
        if name in custom:
            learners.append(_custom_learner(custom[name]))
        elif name in BUILTIN_LEARNERS:
            learner = BUILTIN_LEARNERS[name]
            if learner.package and learner.extra and not _installed(learner.package):
                raise ConfigError(_missing(learner.package, learner.extra,
                                           f"training.learners: {name!r}"))
            learners.append(learner.for_target(nonnegative_target))
        else:
            known = sorted([*BUILTIN_LEARNERS, *custom])
            raise ConfigError(f"training.learners: unknown learner {name!r}; choose from "
                              f"{', '.join(known)} or define it under training.custom_learners.")
    return learners


def _custom_learner(spec: CustomLearnerSpec) -> Learner:
    where = f"training.custom_learners.{spec.name}"
    cls = _import(spec.estimator, where)
    try:
        accepted = cls().get_params()
    except TypeError as exc:
        raise ConfigError(f"{where}.estimator: {spec.estimator} cannot be built without "
                          f"arguments ({exc}).") from exc
    unknown = (set(spec.search_space) | set(spec.params)) - set(accepted)
    if unknown:
        raise ConfigError(f"{where}: {spec.estimator} has no parameter(s) {sorted(unknown)}; "
                          f"it accepts {', '.join(sorted(accepted))}.")

    def build(params: Params, task: Task, seed: int, n_jobs: int) -> BaseEstimator:
        settings = {**spec.params, **params}
        if "random_state" in accepted and "random_state" not in settings:
            settings["random_state"] = seed
        return cls(**settings)

    return Learner(spec.name, dict(spec.search_space), build, scale_numeric=spec.scale_numeric)


def _import(path: str, where: str) -> type[BaseEstimator]:
    module_name, _, attr = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}.estimator: cannot import {path!r} ({exc}); check the "
                          "spelling and that its package is installed.") from exc
    if not (isinstance(cls, type) and hasattr(cls, "fit") and hasattr(cls, "get_params")):
        raise ConfigError(f"{where}.estimator: {path!r} is not a scikit-learn estimator class "
                          "(it needs fit and get_params).")
    return cls
