"""The project facade and the context the pipelines take instead of it."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel import Project
from flywheel.pipelines._context import ProjectContext
from tests.conftest import CHURN, REPO

HEAVY = ("mlflow", "optuna", "lightgbm")
PIPELINES = REPO / "src" / "flywheel" / "pipelines"

_RUN_CLI = """
import json, sys
from flywheel.cli.main import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "heavy": sorted(m for m in HEAVY if m in sys.modules)}))
""".replace("HEAVY", repr(HEAVY))


def _cli_modules(*args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", _RUN_CLI, *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_init_and_validate_never_import_mlflow_optuna_or_lightgbm(tmp_path: Path) -> None:
    shutil.copy(CHURN, tmp_path / "churn.parquet")
    init = _cli_modules("init", str(tmp_path / "churn.parquet"), "--target", "churn",
                        "--dir", str(tmp_path))
    assert init == {"code": 0, "heavy": []}
    validate = _cli_modules("validate", "--config", str(tmp_path))
    assert validate == {"code": 0, "heavy": []}


def test_no_pipeline_module_imports_the_facade() -> None:
    # kubeflow.py is, like the facade, an entry point (the Kubeflow steps call it) that no
    # pipeline module imports, so it may build a Project without making a cycle.
    entry_points = ("project.py", "__init__.py", "kubeflow.py")
    for path in sorted(PIPELINES.glob("*.py")):
        if path.name in entry_points:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {alias.name for alias in node.names}
                assert not (node.module == "flywheel.pipelines.project"
                            or (node.module == "flywheel.pipelines" and "Project" in names)
                            or (node.module == "flywheel" and "Project" in names)), path.name


def test_init_hands_its_inferred_schema_to_the_project(tmp_path: Path) -> None:
    shutil.copy(CHURN, tmp_path / "churn.parquet")
    project = Project.init(tmp_path / "churn.parquet", "churn", directory=tmp_path)
    (tmp_path / "schema.yaml").unlink()  # not read again: init holds the schema it wrote
    assert project.schema.target == "churn"


def test_a_context_reads_its_schema_once_and_builds_one_registry(tmp_path: Path) -> None:
    shutil.copy(CHURN, tmp_path / "churn.parquet")
    Project.init(tmp_path / "churn.parquet", "churn", directory=tmp_path)
    context = ProjectContext.load(tmp_path)
    assert context.schema is context.schema
    assert context.registry() is context.registry()
    assert len(context.load_data()) == 5000
    with pytest.raises(AttributeError):
        context.spec = context.spec  # type: ignore[misc]


def test_a_context_with_another_spec_keeps_the_folder_and_the_schema(tmp_path: Path) -> None:
    shutil.copy(CHURN, tmp_path / "churn.parquet")
    project = Project.init(tmp_path / "churn.parquet", "churn", directory=tmp_path)
    assert project.with_spec(project.spec) is project
    other = project.with_spec(project.spec.model_copy(update={"name": "other"}))
    assert other.spec.name == "other" and other.spec.root == project.spec.root
    assert other.workspace.root == project.workspace.root
    assert other.schema is project.schema


def test_no_pipeline_module_imports_the_kubeflow_steps() -> None:
    for path in sorted(PIPELINES.glob("*.py")):
        if path.name == "kubeflow.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module != "flywheel.pipelines.kubeflow", path.name
