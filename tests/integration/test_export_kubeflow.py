"""The Kubeflow pipeline compiled from the churn example, run end to end with kfp.local (no
cluster): it registers the version `flywheel train` registers, metric for metric."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kfp import components, local  # the kubeflow extra, in dev: missing is a failure, not a skip

from flywheel import Project
from flywheel.demo import ServerProcess
from flywheel.pipelines.kubeflow import open_project, register_step
from tests.conftest import add_version, make_project
from tests.integration.conftest import start_server

pytestmark = pytest.mark.slow  # two trainings and a four-step pipeline: about a minute

SEARCH = {"cv_folds": 3, "search": {"trials": 4, "seed": 7}}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flywheel.cli.main", *args],
                          capture_output=True, text=True, timeout=600)


def _run_metrics(project: Project, version: str) -> dict[str, float]:
    registry = project.registry()
    run_id = registry.version_info(version).run_id or ""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=registry.tracking_uri)
    return {k: v for k, v in client.get_run(run_id).data.metrics.items()
            if k.startswith(("holdout_", "cv_"))}


def _pipeline(project_root: Path, tmp_path: Path) -> Any:
    output = tmp_path / "pipeline.yaml"
    done = _cli("export", "kubeflow", "-c", str(project_root), "-o", str(output))
    assert done.returncode == 0, done.stderr
    local.init(runner=local.SubprocessRunner(use_venv=False),
               pipeline_root=str(tmp_path / "kfp-outputs"))
    return components.load_component_from_file(str(output))  # kfp's own loader


def test_the_compiled_churn_pipeline_registers_what_flywheel_train_registers(
        tmp_path: Path) -> None:
    by_cli = make_project(tmp_path / "cli", training=SEARCH)
    by_kfp = make_project(tmp_path / "kfp", training=SEARCH)
    done = _cli("train", "--config", str(by_cli.spec.root))
    assert done.returncode == 0, done.stderr

    task = _pipeline(by_kfp.spec.root, tmp_path)()
    assert task.output == "1"

    expected = _run_metrics(by_cli, "1")
    assert _run_metrics(by_kfp, "1") == expected  # same seed and trials: the same model
    assert {k for k in expected if k.startswith("holdout_")} >= {"holdout_roc_auc",
                                                                  "holdout_log_loss"}
    cli_version = by_cli.registry().version_info("1")
    kfp_version = by_kfp.registry().version_info("1")
    assert kfp_version.aliases == ("champion",)  # the first version, as with flywheel train
    for tag in ("flywheel.study", "flywheel.best_trial", "flywheel.learner",
                "flywheel.data_fingerprint", "flywheel.gates.passed"):
        assert kfp_version.tags[tag] == cli_version.tags[tag], tag
    assert "flywheel.card_error" not in by_kfp.registry().run_tags(kfp_version.run_id or "")
    assert by_kfp.model_card("1", tmp_path / "card").is_file()  # as flywheel train writes
    actions = [entry.action for entry in by_kfp.history().entries]
    assert actions[-1] == "register"  # audited like any registration

    # The register step runs once per candidate: a retried step answers the same version.
    again = register_step(Project.load(by_kfp.spec.root), kfp_version.run_id or "")
    assert (again["version"], again["registered"]) == ("1", False)
    assert [v.version for v in by_kfp.registry().versions()] == ["1"]

    # The readiness path the KServe manifests probe is the served model's.
    server = start_server(by_kfp.spec.root)
    try:
        with urllib.request.urlopen(f"{server.url}/v2/health/ready", timeout=10) as answer:
            assert answer.status == 200
    finally:
        server.stop()


def test_data_that_fails_validation_stops_the_pipeline_before_anything_is_trained(
        tmp_path: Path, churn: Any) -> None:
    project = make_project(tmp_path / "kfp", training=SEARCH)
    broken = churn.drop(columns=["total_day_minutes"])  # a feature the schema requires
    broken.to_parquet(project.spec.data_path)
    with pytest.raises(RuntimeError, match="validate"):
        _pipeline(project.spec.root, tmp_path)()
    assert project.registry().versions() == []
    assert not project.workspace.optuna_db.exists()  # the train step never started


def test_a_project_folder_with_another_spec_is_never_overwritten(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", training=SEARCH)
    spec_path = project.spec.root / "flywheel.yaml"
    mine = spec_path.read_text()
    theirs = yaml.safe_dump({**yaml.safe_load(mine), "name": "another"})
    from flywheel.core.errors import ConfigError

    with pytest.raises(ConfigError, match="differs from the flywheel.yaml the pipeline"):
        open_project(str(project.spec.root), theirs,
                     (project.spec.root / "schema.yaml").read_text())
    assert spec_path.read_text() == mine


def test_a_kserve_canary_pod_serves_the_challenger_alone(tmp_path: Path, fitted: Any) -> None:
    project = make_project(tmp_path / "p", training=SEARCH)
    assert (add_version(project, fitted), add_version(project, fitted)) == ("1", "2")
    registry = project.registry()
    for version in ("1", "2"):  # what a server reads beside the model
        registry.log_artifact_text(registry.version_info(version).run_id or "", "schema.yaml",
                                   project.schema.to_yaml())
    log_file = tmp_path / "serve.log"
    # What the canary InferenceService's container runs (FLYWHEEL_SERVE_ALIASES=challenger).
    server = ServerProcess(project.spec.root, log_file=log_file,
                           env={"FLYWHEEL_SERVE_ALIASES": "challenger"})
    try:
        server.start(timeout=90)
    except RuntimeError as exc:
        raise AssertionError(f"{exc}:\n{log_file.read_text()[-4000:]}") from None
    try:
        with urllib.request.urlopen(f"{server.url}/v2/health/ready", timeout=10) as answer:
            assert answer.status == 200
        loaded = httpx.get(f"{server.url}/readyz", timeout=10).json()["models"]
        assert loaded == {"challenger": "2"}  # the challenger alone, not champion 1
    finally:
        server.stop()
