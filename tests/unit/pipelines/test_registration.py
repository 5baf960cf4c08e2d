"""Registering a candidate apart from its training: the hand-off through the tracking store
that the Kubeflow pipeline's train and register steps use (on MLflow/SQLite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flywheel.core.errors import RegistryError
from flywheel.evaluation import GateReport, GateResult
from flywheel.features import FEATURE_TRUSTED_TYPES
from flywheel.pipelines._gating import GATES_ARTIFACT
from flywheel.pipelines._registration import (
    TAG_REGISTRATION,
    hold_for_registration,
    register_pending,
)
from tests.conftest import CHURN, make_project


def _project(root: Path) -> Any:
    """A project whose data is a small slice of churn: these tests train nothing."""
    import pandas as pd

    return make_project(root, frame=pd.read_parquet(CHURN).head(300))


def _held_run(project: Any, fitted: tuple[Any, Any], *, passed: bool = True) -> str:
    model, x = fitted
    registry = project.registry()
    gates = GateReport((GateResult("latency", "pass" if passed else "fail", "p99 1 ms"),))
    run_id: str
    with registry.parent_run("train") as run_id:
        registry.log_artifact_text(run_id, GATES_ARTIFACT, gates.to_json())
        logged = registry.log_model(run_id, model, input_example=x.head(3),
                                    extra_trusted_types=list(FEATURE_TRUSTED_TYPES),
                                    pyfunc_predict_fn="predict_proba")
        hold_for_registration(registry, run_id, logged,
                              {"flywheel.holdout_roc_auc": "0.91", **gates.tags()})
    return run_id


def test_a_held_candidate_is_registered_once_with_its_tags_and_audited(
        tmp_path: Path, fitted: tuple[Any, Any]) -> None:
    project = _project(tmp_path / "p")
    run_id = _held_run(project, fitted)
    registry = project.registry()
    assert registry.versions() == []  # held: nothing registered by the train step
    assert registry.run_tags(run_id)[TAG_REGISTRATION] == "pending"

    first = register_pending(project, run_id)
    assert (first.version.version, first.registered) == ("1", True)
    assert first.version.aliases == ("champion",)
    assert first.version.tags["flywheel.holdout_roc_auc"] == "0.91"
    assert first.version.tags["flywheel.gates.passed"] == "true"
    assert registry.run_tags(run_id)[TAG_REGISTRATION] == "version 1"
    assert [e.action for e in project.history().entries] == ["register"]

    again = register_pending(project, run_id)  # a retried register step
    assert (again.version.version, again.registered) == ("1", False)
    assert [v.version for v in registry.versions()] == ["1"]


@pytest.mark.slow  # three registrations: about 20 s
def test_promotion_auto_promotes_a_held_candidate_only_when_its_gates_passed(
        tmp_path: Path, fitted: tuple[Any, Any]) -> None:
    project = _project(tmp_path / "p")
    register_pending(project, _held_run(project, fitted))  # the first is champion anyway
    raw = (project.spec.root / "flywheel.yaml").read_text()
    (project.spec.root / "flywheel.yaml").write_text(raw + "\npromotion: {auto: true}\n")
    from flywheel import Project

    project = Project.load(project.spec.root)
    failed = register_pending(project, _held_run(project, fitted, passed=False))
    assert (failed.version.version, failed.promoted) == ("2", False)
    assert failed.version.aliases == ("challenger",)
    passed = register_pending(project, _held_run(project, fitted))
    assert (passed.version.version, passed.promoted) == ("3", True)
    assert "champion" in passed.version.aliases


def test_a_run_holding_no_candidate_is_refused_saying_which_store_to_check(
        tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    registry = project.registry()
    with registry.parent_run("not a candidate") as run_id:
        pass
    with pytest.raises(RegistryError, match=r"holds no pending registration.*tracking_uri"):
        register_pending(project, run_id)
    assert registry.versions() == []
