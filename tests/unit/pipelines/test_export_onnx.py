"""`flywheel export onnx` and ``serving.runtime: onnx`` on a real MLflow store (SQLite)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from flywheel.core.errors import ModelNotFoundError
from flywheel.features import OnnxPredictor
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines.export_onnx import export_onnx
from flywheel.serving import ONNX_ARTIFACT, ONNX_REPORT_ARTIFACT, ModelStore
from tests.conftest import CHURN, make_project, register_lightgbm

TRAIN_ROWS = 1500
FLYWHEEL = str(Path(sys.executable).parent / "flywheel")


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[ProjectContext, str, Any, pd.DataFrame]:
    """One project with version 1 registered, not yet exported (MLflow logging takes
    seconds, so the tests share it; the serving test runs first and exports)."""
    root = tmp_path_factory.mktemp("onnx") / "p"
    make_project(root, frame=pd.read_parquet(CHURN).head(2000))
    context = ProjectContext.load(root)
    return (context, *register_lightgbm(context, train_rows=TRAIN_ROWS))


def test_runtime_onnx_serves_the_verified_graph_and_refuses_a_version_never_exported(
        registered: tuple[ProjectContext, str, Any, pd.DataFrame], tmp_path: Path) -> None:
    context, version, model, holdout = registered
    store = ModelStore(context.registry(), poll_interval=60, runtime="onnx")
    assert store.reconcile() is False and store.default is None
    assert f"run `flywheel export onnx {version}`" in (store.last_error or "")
    export_onnx(context, version, output=tmp_path / "m.onnx")
    assert store.reconcile() and store.default is not None
    assert store.default.model.form == "onnx"
    records = holdout.head(50).to_dict(orient="records")
    labels, probabilities = store.default.answer(records)
    expected = model.predict_proba(holdout.head(50))
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert labels == [("no", "yes")[i] for i in expected.argmax(axis=1)]


def test_the_export_writes_the_graph_verified_on_the_holdout_and_records_it(
        registered: tuple[ProjectContext, str, Any, pd.DataFrame], tmp_path: Path) -> None:
    context, version, model, holdout = registered
    done = export_onnx(context, version, output=tmp_path / "out" / "churn.onnx")
    assert done.report.verified and done.report.rows == len(holdout) == 500
    assert done.report.label_agreement == 1.0 and done.report.max_abs_diff < 1e-5
    graph = OnnxPredictor((tmp_path / "out" / "churn.onnx").read_bytes())
    np.testing.assert_allclose(graph.predict_columns({c: holdout[c] for c in holdout}),
                               model.predict_proba(holdout), atol=1e-5)
    registry = context.registry()
    info = registry.version_info(version)
    assert info.tags["flywheel.onnx.verified"] == "true"
    assert info.tags["flywheel.onnx.label_agreement"] == "1.000000"
    assert info.run_id is not None
    assert registry.artifact_exists(info.run_id, ONNX_ARTIFACT)
    assert '"verified": true' in registry.read_artifact_text(info.run_id, ONNX_REPORT_ARTIFACT)


def test_an_unknown_version_is_refused_and_nothing_is_written(
        registered: tuple[ProjectContext, str, Any, pd.DataFrame], tmp_path: Path) -> None:
    context = registered[0]
    with pytest.raises(ModelNotFoundError):
        export_onnx(context, "7", output=tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_the_cli_exports_a_version_and_exits_2_for_one_that_does_not_exist(
        registered: tuple[ProjectContext, str, Any, pd.DataFrame], tmp_path: Path) -> None:
    config = str(registered[0].spec.root / "flywheel.yaml")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    ok = subprocess.run([FLYWHEEL, "export", "onnx", "1", "-o",
                         str(tmp_path / "cli.onnx"), "-c", config],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "verified, label agreement 100.00%" in " ".join(ok.stdout.split())
    assert (tmp_path / "cli.onnx").stat().st_size > 1000
    missing = subprocess.run([FLYWHEEL, "export", "onnx", "9", "-c", config], capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 2 and "has no version 9" in missing.stderr


def test_serving_runtime_must_name_a_known_runtime(tmp_path: Path) -> None:
    from flywheel.core.errors import ConfigError
    from flywheel.core.spec import load_spec

    make_project(tmp_path / "p", frame=pd.read_parquet(CHURN).head(200))
    spec_path = tmp_path / "p" / "flywheel.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["serving"] = {"runtime": "tensorrt"}
    spec_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="serving.runtime"):
        load_spec(spec_path)


def test_the_default_runtime_never_imports_the_onnx_or_redis_engines() -> None:
    # Training is checked for the ONNX engines only: Optuna's journal storage imports redis.
    code = ("import sys\n"
            "import flywheel.cli.main, flywheel.pipelines.serve, flywheel.serving.app\n"
            "import flywheel.features\n"
            "engines = ('onnx', 'onnxruntime', 'skl2onnx', 'onnxmltools')\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "(*engines, 'redis', 'hiredis'))\n"
            "import flywheel.pipelines.train\n"
            "loaded += sorted(m for m in sys.modules if m.split('.')[0] in engines)\n"
            "print(loaded)\n"
            "sys.exit(1 if loaded else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
