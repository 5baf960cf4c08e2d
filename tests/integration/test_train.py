"""`flywheel train` end to end on real data, with a real MLflow store and Optuna storage."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from flywheel import Project
from flywheel.cli.main import main
from flywheel.core.errors import DataValidationError, TrainingError
from tests.conftest import CHURN, DIAMONDS, make_project

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, object, object]:
    project = make_project(tmp_path_factory.mktemp("churn"))
    first = project.train()
    second = project.train(trials=6)
    return project, first, second


def test_first_version_is_champion_and_the_next_a_challenger(trained: tuple) -> None:
    project, first, second = trained
    assert first.version.version == "1" and "champion" in first.version.aliases
    assert second.version.version == "2" and "challenger" in second.version.aliases
    aliases = {v.version: v.aliases for v in project.registry().versions()}
    assert aliases == {"2": ("challenger",), "1": ("champion",)}


def test_holdout_metrics_are_sensible_and_recorded_with_the_version(trained: tuple) -> None:
    project, first, _ = trained
    assert 0.85 < first.holdout_metrics["roc_auc"] <= 1.0
    assert first.rows == {"search": 4000, "holdout": 1000}
    tags = project.registry().versions()[-1].tags
    assert float(tags["flywheel.holdout_roc_auc"]) == pytest.approx(
        first.holdout_metrics["roc_auc"], rel=1e-5)
    assert tags["flywheel.data_fingerprint"] == first.data_fingerprint
    assert tags["flywheel.spec_hash"] and tags["flywheel.version"]
    assert json.loads(tags["flywheel.classes"]) == ["no", "yes"]


def test_parent_run_holds_trials_dataset_and_artifacts(trained: tuple) -> None:
    project, first, _ = trained
    client = mlflow.MlflowClient(project.registry().tracking_uri)
    parent = client.get_run(first.run_id)
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{first.run_id}'")
    assert len(children) == 4
    assert all("duration_s" in c.data.metrics for c in children)
    assert any("cv_roc_auc" in c.data.metrics for c in children)
    digests = [d.dataset.digest for d in parent.inputs.dataset_inputs]
    assert first.data_fingerprint.removeprefix("sha256:")[:20] in "".join(digests) or \
        any(first.data_fingerprint.startswith(d) for d in digests)
    names = {a.path for a in client.list_artifacts(first.run_id)}
    assert {"schema.yaml", "profile.json", "model_meta.json"} <= names
    assert parent.data.metrics["holdout_roc_auc"] == pytest.approx(first.holdout_metrics["roc_auc"])


def test_registered_model_is_skops_and_predicts_like_the_trained_one(trained: tuple) -> None:
    project, first, _ = trained
    registry = project.registry()
    version = registry.versions()[-1]
    assert version.tags["flywheel.serialization"] == "skops"
    model = registry.load_model("champion")
    frame = pd.read_parquet(CHURN).head(50)
    proba = model.predict_proba(frame[project.schema.feature_columns])
    assert proba.shape == (50, 2) and np.allclose(proba.sum(axis=1), 1)


def test_the_second_run_resumed_the_same_study(trained: tuple) -> None:
    _, first, second = trained
    assert second.study_name == first.study_name
    assert sum(second.trials.values()) == 6  # 4 from the first run + 2 new


def test_same_seed_and_data_give_the_same_parameters_and_metric(tmp_path: Path,
                                                                trained: tuple) -> None:
    _, first, _ = trained
    again = make_project(tmp_path / "again").train()
    assert again.params == first.params and again.learner == first.learner
    assert again.holdout_metrics["roc_auc"] == pytest.approx(first.holdout_metrics["roc_auc"])


def test_data_failing_the_gate_is_refused_and_nothing_is_registered(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    bad = pd.read_parquet(CHURN)
    bad.loc[bad.index[:1000], "state"] = "XX"
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataValidationError, match="flywheel validate"):
        project.train(tmp_path / "bad.parquet")
    assert project.registry().versions() == []


def test_failing_trials_are_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    project = make_project(tmp_path, training={
        "learners": ["flaky", "linear"], "search": {"trials": 8, "seed": 1, "sampler": "random"},
        "custom_learners": [{"name": "flaky", "estimator": "tests.estimators.FlakyClassifier",
                             "search_space": {"fail": {"type": "categorical",
                                                       "choices": [True]}}}],
    })
    result = project.train()
    assert result.trials["fail"] >= 1 and result.trials["complete"] >= 1
    assert result.learner == "linear"
    client = mlflow.MlflowClient(project.registry().tracking_uri)
    failed = client.search_runs([client.get_run(result.run_id).info.experiment_id],
                                "attributes.status = 'FAILED'")
    assert failed and "flaky learner failed on purpose" in failed[0].data.tags["flywheel.error"]


def test_every_trial_failing_is_a_clear_error_and_registers_nothing(tmp_path: Path) -> None:
    project = make_project(tmp_path, training={
        "learners": ["flaky"],
        "custom_learners": [{"name": "flaky", "estimator": "tests.estimators.FlakyClassifier",
                             "params": {"fail": True}}],
    })
    with pytest.raises(TrainingError, match="none of the 4 trial.*flaky learner failed"):
        project.train()
    assert project.registry().versions() == []


def test_regression_on_diamonds_optimizes_rmse(tmp_path: Path) -> None:
    frame = pd.read_parquet(DIAMONDS).sample(3000, random_state=0)
    project = make_project(tmp_path, data=DIAMONDS, target="price", frame=frame)
    result = project.train()
    assert result.metric == "rmse" and project.spec.target.task == "regression"
    assert result.holdout_metrics["r2"] > 0.9
    assert result.holdout_metrics["rmse"] < frame["price"].std()


def test_train_cli_shows_the_summary_and_models_lists_the_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_project(tmp_path, training={"learners": ["linear"]})
    assert main(["train", "--config", str(tmp_path), "--trials", "2"]) == 0
    out = capsys.readouterr().out
    assert "Model version 1 (champion)" in out and "holdout" in out
    assert main(["models", "--config", str(tmp_path), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["aliases"] == ["champion"] and row["learner"] == "linear"
    assert row["data"].startswith("sha256:")


def test_train_cli_rejects_a_bad_budget_and_an_unknown_learner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_project(tmp_path, training={"learners": ["gradient_magic"]})
    assert main(["train", "--config", str(tmp_path), "--trials", "0"]) == 2
    assert main(["train", "--config", str(tmp_path)]) == 2
    assert "unknown learner 'gradient_magic'" in capsys.readouterr().err


def test_a_resumed_study_is_said_and_each_trial_is_logged_once(trained: tuple) -> None:
    project, first, second = trained
    assert not any("resumed" in note for note in first.notes)
    assert any("resumed study" in note and "4 trial(s)" in note for note in second.notes)
    assert (second.resumed_trials, second.new_trials) == (4, 2)
    client = mlflow.MlflowClient(project.registry().tracking_uri)
    experiment = client.get_run(first.run_id).info.experiment_id
    numbers = {}
    for parent in (first.run_id, second.run_id):
        children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
        numbers[parent] = sorted(int(c.data.tags["flywheel.trial"]) for c in children)
    assert numbers == {first.run_id: [0, 1, 2, 3], second.run_id: [4, 5]}


def test_parent_runs_are_named_for_the_version_and_the_time(trained: tuple) -> None:
    project, first, second = trained
    client = mlflow.MlflowClient(project.registry().tracking_uri)
    names = [client.get_run(r.run_id).info.run_name for r in (first, second)]
    pattern = rf"^{project.spec.name} v(\d) \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d$"
    assert [re.match(pattern, n).group(1) for n in names] == ["1", "2"]  # type: ignore[union-attr]


def test_the_summary_says_how_long_each_phase_took(trained: tuple) -> None:
    _, first, _ = trained
    assert list(first.phases) == ["validation", "tracking", "search", "refit", "gates",
                                  "registration", "card"]
    assert all(seconds >= 0 for seconds in first.phases.values())
    assert sum(first.phases.values()) <= first.duration_s


def test_a_study_that_holds_its_trials_registers_nothing_new_unless_asked(
        trained: tuple) -> None:
    project, _, second = trained
    again = project.train(trials=6)
    assert not again.registered and again.version.version == "2"
    assert any("nothing registered" in note and "--register-again" in note
               for note in again.notes)
    assert [v.version for v in project.registry().versions()] == ["2", "1"]
    forced = project.train(trials=6, register_again=True)
    assert forced.registered and forced.version.version == "3"
    assert forced.params == second.params


def test_training_writes_nothing_outside_the_workspace(tmp_path: Path) -> None:
    make_project(tmp_path, training={"learners": ["linear"]})
    before = {p.name for p in tmp_path.iterdir()}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "flywheel.cli.main", "train", "--trials", "2"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert {p.name for p in tmp_path.iterdir()} == before | {".flywheel"}
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
    # MLflow's Default experiment, which the UI and plain MLflow code log to, keeps its
    # artifacts in the workspace too, not in ./mlruns of the folder training ran in.
    client = mlflow.MlflowClient(Project.load(tmp_path).registry().tracking_uri)
    run = client.create_run("0")
    client.log_text(run.info.run_id, "x", "note.txt")
    assert not (tmp_path / "mlruns").exists()
    assert (tmp_path / ".flywheel" / "artifacts" / "0").is_dir()


def test_a_timeout_without_a_trial_count_searches_until_the_budget(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_project(tmp_path, training={"learners": ["linear"]})  # the spec says 4 trials
    assert main(["train", "--config", str(tmp_path), "--timeout", "6"]) == 0
    out = capsys.readouterr().out
    (run,) = _train_runs(tmp_path)
    assert run.data.params["search.trials"] == "None"  # type: ignore[attr-defined]
    # The budget, not the spec's four trials, ended it (how many trials fit in 6 s depends on
    # the machine's load, so the count is not asserted beyond one).
    assert re.search(r"trials: [1-9]\d* complete", out), out
    assert re.search(r"search \d+\.\d s \(budget 6 s, the budget ended it\)", out), out


def test_too_good_results_are_warned_about_naming_the_feature(tmp_path: Path) -> None:
    frame = _loans_like(1500)
    project = make_project(tmp_path, target="grade", frame=frame,
                           training={"search": {"trials": 2, "seed": 0}})
    result = project.train()
    assert result.holdout_metrics["roc_auc"] > 0.99
    assert any("near perfect" in w and "interest_rate" in w for w in result.warnings)
    assert any("one feature, interest_rate, carries" in w for w in result.warnings)
    tags = project.registry().version_info(result.version.version).tags
    assert "interest_rate" in json.loads(tags["flywheel.warnings"])[0]


def _loans_like(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    score, dti = rng.normal(690, 50, n), rng.uniform(0, 40, n)
    rate = np.round((13 - 0.05 * (score - 690) + 0.1 * (dti - 20)
                     + rng.normal(0, 2.5, n)).clip(5, 30), 2)
    grade = np.array(list("ABCDEFG"))[np.digitize(rate, [8, 11, 14, 17, 20, 24])]
    return pd.DataFrame({"interest_rate": rate, "grade": grade, "dti": dti,
                         "credit_score": score, "annual_income": rng.lognormal(11, 0.5, n)})


def _train_runs(root: Path) -> list[object]:
    registry = Project.load(root).registry()
    client = mlflow.MlflowClient(registry.tracking_uri)
    experiment = client.get_experiment_by_name(registry.experiment).experiment_id
    return [r for r in client.search_runs([experiment]) if "flywheel.study" in r.data.tags
            and "mlflow.parentRunId" not in r.data.tags]
