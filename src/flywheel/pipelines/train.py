"""The training flow: validation gate -> split -> search -> refit -> holdout -> model gates ->
track -> register (audited) -> model card -> promotion if promotion.auto and every gate passed.

Nothing is registered until the very end, so an interrupted or failed run leaves the registry
as it was (the MLflow run is marked failed or killed; the Optuna study keeps its trials and the
next `flywheel train` resumes it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flywheel._version import __version__
from flywheel.core.errors import ConfigError, DataValidationError
from flywheel.core.spec import ProjectSpec
from flywheel.data import fingerprint_frame, profile_frame, validate_frame
from flywheel.evaluation import (
    check_gates_config,
    compute_metrics,
    get_metric,
    permutation_importances,
    predict_scores,
)
from flywheel.features import FEATURE_TRUSTED_TYPES
from flywheel.featurestore import pins_tag
from flywheel.pipelines._compile import compile_for_serving, log_onnx_form
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines._ensemble_fit import ensemble_card_rows, refit_model
from flywheel.pipelines._gating import (
    GATES_ARTIFACT,
    TRAIN_ROWS_ARTIFACT,
    gate_candidate,
    log_model_card,
    train_rows_record,
)
from flywheel.pipelines._monitoring_reference import log_monitoring_reference
from flywheel.pipelines._registration import (
    PendingVersion,
    hold_for_registration,
    register_logged,
)
from flywheel.pipelines._too_good import too_good_warnings
from flywheel.pipelines._train_parts import (
    balance,
    digest,
    git_commit,
    log_trial,
    spec_hash_of,
    target_range,
    time_order_of,
)
from flywheel.pipelines._train_result import TrainResult, nothing_new
from flywheel.pipelines._train_runs import (
    TAG_BEST_TRIAL,
    TAG_STUDY,
    PhaseClock,
    close_abandoned_runs,
    logged_trials,
    process_tags,
    registered_best,
    run_name,
)
from flywheel.pipelines._warm_start import TAG_WARM_START, warm_start_from, warm_started_trial
from flywheel.pipelines.promote import promote_version
from flywheel.training import (
    SearchProblem,
    TrialProgress,
    cv_folds,
    default_n_jobs,
    encode_target,
    holdout_split,
    ray_search_workers,
    resolve_learners,
    run_ray_search,
    run_search,
    study_progress,
    study_storage,
)

__all__ = ["PendingVersion", "TrainResult", "train_candidate", "train_project", "with_overrides"]


def with_overrides(spec: ProjectSpec, *, trials: int | None = None, timeout: float | None = None,
                   seed: int | None = None, until_budget: bool = False) -> ProjectSpec:
    """The spec with command-line overrides of the search budget applied (for one run).

    ``until_budget`` (a timeout given without a trial count) lifts the trial count, so the
    search runs until the time budget.
    """
    search = spec.training.search
    updates: dict[str, Any] = {k: v for k, v in (("trials", trials), ("timeout_seconds", timeout),
                                                 ("seed", seed)) if v is not None}
    if until_budget and trials is None:
        updates["trials"] = None
    if not updates:
        return spec
    checked = type(search).model_validate({**search.model_dump(), **updates})
    training = spec.training.model_copy(update={"search": checked})
    return spec.model_copy(update={"training": training})  # keeps the spec's root


def train_project(project: ProjectContext, *, data: str | Path | None = None,
                  trials: int | None = None, timeout: float | None = None,
                  seed: int | None = None, until_budget: bool = False,
                  on_trial: Callable[[TrialProgress], None] | None = None,
                  on_stage: Callable[[str], None] | None = None,
                  register_again: bool = False, warm_start: str | None = None) -> TrainResult:
    """Train, evaluate, track and register a model for ``project``.

    ``warm_start`` (a version or alias, as the loop's ``champion``) seeds a new study with
    that version's learner and parameters as its first trial, when they fit the search space;
    the run's ``flywheel.warm_start`` tag and the notes say what happened.

    ``trials``, ``timeout``, ``seed`` and ``until_budget`` override the spec's search
    settings for this run (see ``with_overrides``). When the study already holds its trials
    and its best trial's model is registered, nothing is trained or registered (the result
    says so, with that version) unless ``register_again``.

    Raises:
        DataValidationError: If the data fails the validation gate.
        TrainingError: If no trial completes.
        ConfigError: For an invalid learner, metric or positive class.
    """
    result = _train(project, data=data, trials=trials, timeout=timeout, seed=seed,
                    until_budget=until_budget, on_trial=on_trial, on_stage=on_stage,
                    register_again=register_again, hold=False, warm_start=warm_start)
    if not isinstance(result, TrainResult):  # only hold=True stops before registering
        raise TypeError("training without hold returned a pending version")
    return result


def train_candidate(project: ProjectContext, *, data: str | Path | None = None,
                    trials: int | None = None, seed: int | None = None,
                    on_stage: Callable[[str], None] | None = None
                    ) -> TrainResult | PendingVersion:
    """Train and gate a model as `flywheel train` does, and stop before registering it.

    The run holds the model, its gate report and the pending record; ``register_pending``
    (``pipelines._registration``) registers it, in another process if need be (the train and
    register steps of a Kubeflow pipeline). When the study already holds its trials and its
    best model is registered, the result is that version (``TrainResult.registered`` false).

    Raises:
        DataValidationError, TrainingError, ConfigError: As ``train_project``.
    """
    return _train(project, data=data, trials=trials, timeout=None, seed=seed,
                  until_budget=False, on_trial=None, on_stage=on_stage, register_again=False,
                  hold=True)


def _train(project: ProjectContext, *, data: str | Path | None, trials: int | None,
           timeout: float | None, seed: int | None, until_budget: bool,
           on_trial: Callable[[TrialProgress], None] | None,
           on_stage: Callable[[str], None] | None, register_again: bool,
           hold: bool, warm_start: str | None = None) -> TrainResult | PendingVersion:
    started = time.monotonic()
    started_at = dt.datetime.now(dt.UTC)
    stage = on_stage or (lambda _: None)
    clock = PhaseClock(stage)
    project = project.with_spec(with_overrides(project.spec, trials=trials, timeout=timeout,
                                               seed=seed, until_budget=until_budget))
    spec, schema, workspace = project.spec, project.schema, project.workspace
    metric = get_metric(spec.target.task, spec.training.metric)
    check_gates_config(spec.gates, spec.target.task, metric.name)
    learners = {learner.name: learner for learner in resolve_learners(spec.training)}
    source = str(data) if data is not None else spec.data.path
    # A Ray search's worker processes import flywheel while the data is read and checked.
    with workspace.lock("train", command="flywheel train"), \
            ray_search_workers(spec.training.search):
        clock.start("validation", "Reading and validating the data")
        frame = project.load_data(data)
        report = validate_frame(frame, schema, spec.validation, source=source)
        if not report.ok:
            raise DataValidationError(report, path=source,
                                      hint=f"training refuses it; run `flywheel validate "
                                           f"{source}` for the details")
        missing = [c for c in spec.gates.fairness.sensitive_columns if c not in frame.columns]
        if missing:
            raise ConfigError(f"gates.fairness.sensitive_columns: {missing} not in the data "
                              f"({source}); name columns of the training data.")
        fingerprint = fingerprint_frame(frame)
        features = schema.feature_columns
        y, encoding = encode_target(frame[schema.target], spec.target)
        time_order = time_order_of(frame, spec)
        seed = spec.training.search.seed
        search_rows, holdout_rows = holdout_split(
            y, task=spec.target.task, fraction=spec.training.holdout_fraction,
            seed=spec.training.holdout_seed, time_order=time_order)
        x_search = frame.iloc[search_rows][features].reset_index(drop=True)
        x_holdout = frame.iloc[holdout_rows][features].reset_index(drop=True)
        y_search, y_holdout = y[search_rows], y[holdout_rows]
        folds = cv_folds(y_search, task=spec.target.task, k=spec.training.cv_folds, seed=seed,
                         time_order=None if time_order is None else time_order[search_rows])
        spec_hash = spec_hash_of(spec)
        study_name = f"{spec.name}-{digest(spec_hash, fingerprint, schema.model_dump_json())}"
        problem = SearchProblem(
            frame=x_search, y=y_search, folds=folds, schema=schema, spec=spec,
            metric_name=metric.name, storage_url=study_storage(spec, workspace.optuna_db),
            study_name=study_name, n_jobs=default_n_jobs(spec.training.search.parallel),
        )
        clock.start("tracking", "Opening the tracking store and the study")
        registry = project.registry()
        notes = close_abandoned_runs(registry, workspace, workspace.stale_holders.get("train"))
        finished, best_trial = study_progress(problem)
        warm_note = None
        if warm_start is not None and not finished:
            warm, warm_note = warm_start_from(registry, spec, warm_start,
                                              nonnegative_target=problem.nonnegative_target)
            problem = dataclasses.replace(problem, warm_start=warm)
        total = spec.training.search.trials
        if finished and total is not None and finished >= total and best_trial is not None \
                and not register_again:
            existing = registered_best(registry, study_name, best_trial)
            if existing is not None:
                return nothing_new(existing, study_name, finished, best_trial, notes,
                                   clock, started, rows=(len(x_search), len(x_holdout)),
                                   fingerprint=fingerprint)
        tags = {
            "flywheel.data_fingerprint": fingerprint,
            "flywheel.spec_hash": spec_hash,
            "flywheel.version": __version__,
            "flywheel.task": spec.target.task,
            "flywheel.metric": metric.name,
            TAG_STUDY: study_name,
            "flywheel.classes": json.dumps(list(encoding.classes)),
            **({"flywheel.git_commit": commit} if (commit := git_commit(spec.root)) else {}),
            **pins_tag(spec, workspace),
        }
        search_settings = spec.training.search.model_dump()
        with registry.parent_run(run_name(spec.name, started_at),
                                 tags={**tags, **process_tags(workspace)},
                                 params={"metric": metric.name, **{f"search.{k}": v for k, v in
                                                                   search_settings.items()}}
                                 ) as run_id:
            registry.log_dataset(run_id, frame, name=Path(source).name, fingerprint=fingerprint)
            if finished:
                notes.append(f"resumed study {study_name}: {finished} trial(s) finished in "
                             "earlier runs count toward this one's"
                             + (f" {total}" if total is not None else " budget")
                             + " and are not logged again")
            clock.start("search", f"Searching (resuming {finished} earlier trial(s))"
                        if finished else "Searching")
            search = run_ray_search if spec.training.search.backend == "ray" else run_search
            result = search(problem, on_trial=on_trial,
                            recorded=logged_trials(registry, study_name),
                            record=lambda trial: log_trial(registry, run_id, trial, study_name))
            if warm_note is not None:
                seeded = warm_started_trial(result.trials)
                warm_note = (f"{warm_note} (trial {seeded.number}, "
                             f"{seeded.state.name.lower()})" if seeded else warm_note)
                notes.append(warm_note)
                registry.set_tags(run_id, {TAG_WARM_START: warm_note[:5000]})
            clock.start("refit", f"Refitting {result.learner} on {len(x_search):,} rows"
                        if spec.training.ensemble.size == 1 else
                        f"Selecting the ensemble and refitting it on {len(x_search):,} rows")
            fitted = refit_model(problem, result, x_search, y_search, learners, notes)
            model, learner_name = fitted.model, fitted.learner
            holdout_prediction = predict_scores(model, x_holdout, spec.target.task)
            holdout = compute_metrics(spec.target.task, y_holdout, holdout_prediction)
            ensemble = fitted.summary(y_holdout, x_holdout, spec.target.task, metric.name,
                                      holdout[metric.name])
            importances = permutation_importances(model, x_holdout, y_holdout,
                                                  task=spec.target.task, metric=metric.name,
                                                  seed=seed)
            warnings = too_good_warnings(spec.target.task, holdout, importances, schema)
            metrics = {**{f"cv_{k}": v for k, v in result.cv_metrics.items()},
                       **{f"holdout_{k}": v for k, v in holdout.items()}}
            if ensemble:
                metrics.update({"ensemble_oof_gain": ensemble["oof_gain"],
                                "ensemble_holdout_gain": ensemble["holdout_gain"]})
            registry.log_metrics(run_id, metrics)
            registry.set_tags(run_id, {"flywheel.learner": learner_name,
                                       "flywheel.best_learner": result.learner,
                                       "flywheel.best_params": json.dumps(result.params),
                                       **({"flywheel.ensemble": json.dumps(ensemble)[:7900]}
                                          if ensemble else {}),
                                       TAG_BEST_TRIAL: str(result.best_number),
                                       **({"flywheel.warnings": json.dumps(warnings)}
                                          if warnings else {})})
            registry.log_artifact_text(run_id, "schema.yaml", schema.to_yaml())
            registry.log_artifact_text(run_id, "profile.json",
                                       profile_frame(frame, schema).to_json())
            registry.log_artifact_text(run_id, "model_meta.json", json.dumps({
                "task": spec.target.task, "features": features, "target": schema.target,
                "classes": list(encoding.classes), "learner": learner_name,
                "params": result.params, "metric": metric.name,
                **({"ensemble": ensemble} if ensemble else {}),
            }, indent=1))
            log_monitoring_reference(registry, run_id, frame=frame, schema=schema,
                                     task=spec.target.task, classes=tuple(encoding.classes),
                                     y_holdout=y_holdout, prediction=holdout_prediction,
                                     seed=seed, importances=importances)
            clock.start("gates", "Running the gates")
            compiled, compiled_tags = compile_for_serving(model, schema, spec.target.task,
                                                          x_holdout,
                                                          runtime=spec.serving.runtime)
            log_onnx_form(registry, run_id, compiled)
            gates = gate_candidate(
                spec=spec, schema=schema, registry=registry, model=model, frame=frame,
                holdout_rows=holdout_rows, y_holdout=y_holdout, prediction=holdout_prediction,
                metric=metric.name, holdout_metrics=holdout, cv_metrics=result.cv_metrics,
                classes=tuple(encoding.classes), target_range=target_range(y_search, spec),
                compiled=compiled, on_gate=lambda name: stage(f"Running the gates: {name}"))
            registry.log_artifact_text(run_id, GATES_ARTIFACT, gates.to_json())
            registry.log_artifact_text(run_id, TRAIN_ROWS_ARTIFACT,
                                       train_rows_record(x_search, features))
            clock.start("registration", "Logging and registering the model")
            logged = registry.log_model(
                run_id, model, input_example=x_holdout.head(5),
                allow_pickle=spec.training.allow_pickle,
                extra_trusted_types=list(FEATURE_TRUSTED_TYPES),
                pyfunc_predict_fn=("predict" if spec.target.task == "regression"
                                   else "predict_proba"),
            )
            version_tags = {**tags, "flywheel.learner": learner_name,
                            TAG_BEST_TRIAL: str(result.best_number),
                            **({"flywheel.warnings": json.dumps(warnings)} if warnings else {}),
                            **{f"flywheel.{k}": f"{v:.6g}" for k, v in metrics.items()},
                            **gates.tags(),
                            **compiled_tags}
            if hold:
                hold_for_registration(registry, run_id, logged, version_tags)
                return PendingVersion(
                    run_id=run_id, study_name=study_name, learner=learner_name,
                    metric=metric.name, cv_metrics=dict(result.cv_metrics),
                    holdout_metrics=dict(holdout), gates_passed=gates.passed)
            version = register_logged(project, registry, logged, version_tags, gates)
            registry.rename_run(run_id, run_name(spec.name, started_at, version.version))
            clock.start("card", "Writing the model card")
            card_error = _write_card(
                registry=registry, run_id=run_id, version=version, spec=spec, model=model,
                holdout=x_holdout, y=y_holdout, prediction=holdout_prediction,
                metric=metric.name, cv_metrics=result.cv_metrics, gates=gates,
                facts={"version": version.version, "aliases": ", ".join(version.aliases),
                       "learner": learner_name, "parameters": json.dumps(result.params),
                       **(ensemble_card_rows(ensemble) if ensemble else {}),
                       "MLflow run": run_id, "spec hash": spec_hash[:16],
                       "flywheel": __version__},
                data={"fingerprint": fingerprint, "source": source, "rows": len(frame),
                      "search rows": len(x_search), "holdout rows": len(x_holdout),
                      "feature columns": len(features), "features": features,
                      "target": schema.target, **balance(y, encoding.classes)},
                classes=tuple(encoding.classes))
    promoted = False
    if spec.promotion.auto and gates.passed and "champion" not in version.aliases:
        clock.start("promotion", "Promoting: every gate passed and promotion.auto is on")
        promote_version(project, version.version, action="auto_promote", registry=registry,
                        evidence={"gates": gates.summary()})
        promoted = True
        version = next(v for v in registry.versions() if v.version == version.version)
    counts = {state: sum(t.state.name.lower() == state for t in result.trials)
              for state in ("complete", "pruned", "fail")}
    return TrainResult(
        version=version, run_id=run_id, study_name=study_name, learner=learner_name,
        params=result.params, metric=metric.name, cv_metrics=result.cv_metrics,
        holdout_metrics=holdout, trials=counts,
        rows={"search": len(x_search), "holdout": len(x_holdout)},
        data_fingerprint=fingerprint, duration_s=time.monotonic() - started,
        gates=gates, promoted=promoted, card_error=card_error, phases=clock.stop(),
        resumed_trials=result.resumed, new_trials=result.new_trials,
        budget_s=spec.training.search.timeout_seconds, deadline_hit=result.deadline_hit,
        notes=tuple(notes), warnings=tuple(warnings),
    )


def _write_card(**kwargs: Any) -> str | None:
    """Write the model card; a failure is reported on the run, not a failed training."""
    try:
        log_model_card(**kwargs)
    except Exception as exc:  # the model is registered; a missing card must not undo that
        text = f"{type(exc).__name__}: {exc}"
        kwargs["registry"].set_tags(kwargs["run_id"], {"flywheel.card_error": text})
        return text
    return None
