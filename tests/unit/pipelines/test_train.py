"""pipelines.train: the search overrides and a small real training run (a bare ProjectContext,
MLflow on SQLite, Optuna, 600 rows, two trials of the linear learner)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pydantic
import pytest

from flywheel.core.errors import DataValidationError
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines.train import train_project, with_overrides
from tests.conftest import CHURN, make_project


@pytest.fixture
def context(tmp_path: Path) -> ProjectContext:
    make_project(tmp_path / "p", frame=pd.read_parquet(CHURN).head(600),
                 training={"learners": ["linear"]})
    return ProjectContext.load(tmp_path / "p")


def test_no_override_keeps_the_very_same_spec(context: ProjectContext) -> None:
    assert with_overrides(context.spec) is context.spec


def test_overrides_change_the_search_budget_and_keep_the_project_folder(
        context: ProjectContext) -> None:
    spec = with_overrides(context.spec, trials=9, timeout=30, seed=5)
    search = spec.training.search
    assert (search.trials, search.timeout_seconds, search.seed) == (9, 30, 5)
    assert spec.root == context.spec.root
    assert context.spec.training.search.trials == 4  # the caller's spec is left as it was


def test_a_timeout_alone_lifts_the_trial_count_only_when_asked(
        context: ProjectContext) -> None:
    assert with_overrides(context.spec, timeout=10).training.search.trials == 4
    assert with_overrides(context.spec, timeout=10, until_budget=True
                          ).training.search.trials is None
    assert with_overrides(context.spec, trials=3, until_budget=True
                          ).training.search.trials == 3


def test_an_invalid_override_is_refused_by_the_search_settings(
        context: ProjectContext) -> None:
    with pytest.raises(pydantic.ValidationError, match="trials"):
        with_overrides(context.spec, trials=0)


def test_training_a_context_registers_a_champion_with_the_trials_asked_for(
        context: ProjectContext) -> None:
    stages: list[str] = []
    result = train_project(context, trials=2, on_stage=stages.append)
    assert result.version.version == "1" and "champion" in result.version.aliases
    assert result.trials["complete"] == 2 and result.learner == "linear"
    assert context.spec.training.search.trials == 4  # the override was for this run only
    client = mlflow.MlflowClient(context.registry().tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.params["search.trials"] == "2"
    assert stages[0] == "Reading and validating the data"
    assert [v.version for v in context.registry().versions()] == ["1"]


def test_data_failing_validation_is_refused_before_anything_is_tracked(
        context: ProjectContext, tmp_path: Path) -> None:
    bad = pd.read_parquet(CHURN).head(600).drop(columns=["churn"])
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataValidationError, match="training refuses it"):
        train_project(context, data=tmp_path / "bad.parquet")
    assert not context.workspace.mlflow_db.exists()
