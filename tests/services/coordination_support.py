"""Projects that share back ends for the coordination tests: one flywheel.yaml, copied into
several folders (as on several hosts), with tracking on the mlflow server and coordination in
PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import make_project

REPO = Path(__file__).resolve().parents[2]

# A child process: the project in sys.argv[1], a fitted churn model logged once (as training
# would log it), and a `register()` that registers it through flywheel's audited path.
WORKER_PRELUDE = """
import json, sys, time
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from flywheel import Project
from flywheel.core.spec import FeaturesSpec
from flywheel.evaluation import GateReport
from flywheel.features import FEATURE_TRUSTED_TYPES, build_feature_pipeline
from flywheel.pipelines._registration import register_logged

PASSED = {"flywheel.gates.passed": "true", "flywheel.gates.summary": "all gates passed"}
project = Project.load(sys.argv[1])
registry = project.registry()

def logged_model():
    frame = pd.read_parquet(project.spec.data_path).head(400)
    x = frame[project.schema.feature_columns]
    y = (frame[project.spec.target.column] == "yes").to_numpy(int)
    model = Pipeline([("features", build_feature_pipeline(project.schema, FeaturesSpec(),
                                                          task="binary", scale_numeric=True)),
                      ("model", LogisticRegression(max_iter=200))]).fit(x, y)
    with registry.parent_run("coordination-test") as run_id:
        return registry.log_model(run_id, model, input_example=x.head(3),
                                  extra_trusted_types=list(FEATURE_TRUSTED_TYPES),
                                  pyfunc_predict_fn="predict_proba")

def register(logged):
    return register_logged(project, registry, logged, PASSED, GateReport(())).version
"""


def servable_version(project: Any) -> str:
    """Register a small churn model fitted on ``project``'s schema, with the schema.yaml a
    server reads, the data profile a rollout's monitoring needs and passed gates (training's
    artifacts, without its search)."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from flywheel.core.spec import FeaturesSpec
    from flywheel.data import profile_frame
    from flywheel.features import FEATURE_TRUSTED_TYPES, build_feature_pipeline

    frame = pd.read_parquet(project.spec.data_path).head(400)
    x = frame[project.schema.feature_columns]
    y = (frame[project.spec.target.column] == "yes").to_numpy(int)
    model = Pipeline([("features", build_feature_pipeline(project.schema, FeaturesSpec(),
                                                          task="binary", scale_numeric=True)),
                      ("model", LogisticRegression(max_iter=200))]).fit(x, y)
    registry = project.registry()
    with registry.parent_run("coordination-test") as run_id:
        registry.log_artifact_text(run_id, "schema.yaml", project.schema.to_yaml())
        registry.log_artifact_text(run_id, "profile.json",
                                   profile_frame(frame, project.schema).to_json())
        logged = registry.log_model(run_id, model, input_example=x.head(3),
                                    extra_trusted_types=list(FEATURE_TRUSTED_TYPES),
                                    pyfunc_predict_fn="predict_proba")
        tags = {"flywheel.gates.passed": "true", "flywheel.gates.summary": "all gates passed",
                "flywheel.task": "binary", "flywheel.classes": '["no", "yes"]'}
        return str(registry.register(logged, tags=tags).version)


def shared_project(root: Path, *, tracking_uri: str, coordination_uri: str, model: str,
                   extra: dict[str, Any] | None = None) -> Path:
    """A project at ``root`` whose tracking and coordination are shared; its flywheel.yaml."""
    make_project(root)
    spec_path = root / "flywheel.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["tracking"] = {"tracking_uri": tracking_uri, "model_name": model,
                       "experiment": model}
    raw["coordination"] = {"uri": coordination_uri, "lease_seconds": 4.0,
                           "renew_seconds": 1.0}
    for key, value in (extra or {}).items():
        raw[key] = value
    spec_path.write_text(yaml.safe_dump(raw))
    return spec_path


def copy_project(source: Path, target: Path) -> Path:
    """The same flywheel.yaml, schema and data in another folder (another host's checkout)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file():
            shutil.copy(path, target / path.name)
    return target


def run_worker(root: Path, body: str, *args: str) -> subprocess.Popen[str]:
    """A Python process running ``body`` after WORKER_PRELUDE, for the project at ``root``."""
    code = WORKER_PRELUDE + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code, str(root), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())


def finish(worker: subprocess.Popen[str], timeout: float = 240) -> str:
    out, err = worker.communicate(timeout=timeout)
    if worker.returncode != 0:
        raise AssertionError(f"worker failed ({worker.returncode}):\n{err[-3000:]}")
    return out


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(REPO)}
