"""`flywheel export kubeflow`: the compiled pipeline, as kfp's own loader reads it back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kfp import components as kfp_components  # the kubeflow extra, in dev: never skipped

from flywheel.core.errors import ConfigError
from flywheel.core.spec import load_spec
from flywheel.data import infer_schema
from flywheel.deploy import compile_kubeflow_pipeline, pipeline_name


def _project(root: Path, frame: pd.DataFrame, **sections: object) -> Path:
    """A project folder (flywheel.yaml, schema.yaml) without training anything."""
    root.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(root / "churn.parquet")
    infer_schema(frame, "churn", source="churn.parquet").save(root / "schema.yaml")
    raw = {"name": "Churn_Model", "data": {"path": "churn.parquet"},
           "target": {"column": "churn", "task": "binary", "positive_class": "yes"},
           **sections}
    (root / "flywheel.yaml").write_text(yaml.safe_dump(raw))
    return root / "flywheel.yaml"


@pytest.fixture
def spec_path(tmp_path: Path, churn: pd.DataFrame) -> Path:
    return _project(tmp_path / "project", churn)


def test_the_compiled_pipeline_reloads_with_kfp_as_validate_train_gates_register(
        spec_path: Path, tmp_path: Path) -> None:
    output = compile_kubeflow_pipeline(load_spec(spec_path), tmp_path / "out" / "pipeline.yaml")
    component = kfp_components.load_component_from_file(str(output))
    spec = component.pipeline_spec
    tasks = spec.root.dag.tasks
    assert set(tasks) == {"validate", "train", "gates", "register"}
    assert list(tasks["train"].dependent_tasks) == ["validate"]
    assert set(tasks["gates"].dependent_tasks) == {"train"}
    assert set(tasks["register"].dependent_tasks) == {"train", "gates"}
    assert spec.pipeline_info.name == "churn-model"
    defaults = {name: p.default_value for name, p in
                spec.root.input_definitions.parameters.items()}
    assert json.loads(defaults["spec_yaml"].string_value) == spec_path.read_text()
    assert json.loads(defaults["schema_yaml"].string_value) == \
        (spec_path.parent / "schema.yaml").read_text()
    assert defaults["project_dir"].string_value == str(spec_path.parent.resolve())
    for name in tasks:  # side effects on the registry: never served from KFP's cache
        assert tasks[name].caching_options.enable_cache is False


def test_each_step_runs_flywheel_in_the_deploy_image(tmp_path: Path, churn: pd.DataFrame) -> None:
    spec_path = _project(tmp_path / "p", churn, deploy={
        "image": "registry.example/churn:1.2",
        "kubeflow": {"resources": {"requests": {"cpu": "500m", "memory": "1536Mi"},
                                   "limits": {"cpu": "1", "memory": "3Gi"}}}})
    output = compile_kubeflow_pipeline(load_spec(spec_path), tmp_path / "pipeline.yaml")
    documents = list(yaml.safe_load_all(output.read_text()))
    executors = documents[0]["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {"registry.example/churn:1.2"}
    for executor in executors.values():
        source = executor["container"]["command"][-1]
        assert "from flywheel.pipelines.kubeflow import" in source
        assert "pip install" not in " ".join(executor["container"]["command"])
    resources = executors["exec-train"]["container"]["resources"]
    assert resources["resourceCpuRequest"] == "500m"
    assert resources["resourceMemoryRequest"] == "1536Mi"
    assert resources["resourceMemoryLimit"] == "3Gi"


def test_a_memory_kfp_cannot_express_is_a_config_error_naming_the_field(
        tmp_path: Path, churn: pd.DataFrame) -> None:
    # 1.5Gi is a valid Kubernetes quantity, but KFP wants a whole number of units.
    spec_path = _project(tmp_path / "p", churn, deploy={
        "kubeflow": {"resources": {"limits": {"memory": "1.5Gi"}}}})
    with pytest.raises(ConfigError, match=r"deploy\.kubeflow\.resources\.limits\.memory.*"
                                          r"1\.5Gi.*1536Mi"):
        compile_kubeflow_pipeline(load_spec(spec_path), tmp_path / "pipeline.yaml")
    assert not (tmp_path / "pipeline.yaml").exists()


def test_a_name_kfp_cannot_use_is_a_config_error_naming_it(tmp_path: Path,
                                                          churn: pd.DataFrame) -> None:
    spec_path = _project(tmp_path / "p", churn)
    raw = yaml.safe_load(spec_path.read_text())
    spec_path.write_text(yaml.safe_dump({**raw, "name": "___"}))
    with pytest.raises(ConfigError, match="name: Kubeflow Pipelines cannot name a pipeline"):
        pipeline_name(load_spec(spec_path))


def test_the_cli_writes_the_pipeline_and_exits_2_on_a_value_kfp_cannot_express(
        tmp_path: Path, churn: pd.DataFrame) -> None:
    good = _project(tmp_path / "good", churn)
    done = subprocess.run([sys.executable, "-m", "flywheel.cli.main", "export", "kubeflow",
                           "-c", str(good), "-o", str(tmp_path / "p.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "steps: validate, train, gates, register" in done.stderr
    assert kfp_components.load_component_from_file(str(tmp_path / "p.yaml")).name == \
        "churn-model"
    bad = _project(tmp_path / "bad", churn, deploy={
        "kubeflow": {"resources": {"requests": {"memory": "0.5Gi"}}}})
    done = subprocess.run([sys.executable, "-m", "flywheel.cli.main", "export", "kubeflow",
                           "-c", str(bad), "-o", str(tmp_path / "q.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "deploy.kubeflow.resources.requests.memory" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_kfp_the_export_names_the_extra_to_install(spec_path: Path,
                                                           tmp_path: Path) -> None:
    # sys.modules[name] = None is how Python blocks an import: kfp is "not installed" here.
    code = ("import sys; sys.modules['kfp'] = None\n"
            "from flywheel.cli.main import main\n"
            f"sys.exit(main(['export', 'kubeflow', '-c', {str(spec_path)!r}, "
            f"'-o', {str(tmp_path / 'p.yaml')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "pip install flywheel[kubeflow]" in done.stderr


def test_a_volume_is_mounted_at_project_dir_in_every_step(tmp_path: Path,
                                                          churn: pd.DataFrame) -> None:
    spec_path = _project(tmp_path / "p", churn, deploy={
        "kubeflow": {"project_dir": "/mnt/project", "volume": "churn-workspace"}})
    output = compile_kubeflow_pipeline(load_spec(spec_path), tmp_path / "pipeline.yaml")
    documents = list(yaml.safe_load_all(output.read_text()))
    defaults = documents[0]["root"]["inputDefinitions"]["parameters"]
    assert defaults["project_dir"]["defaultValue"] == "/mnt/project"
    executors = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert sorted(executors) == ["exec-gates", "exec-register", "exec-train", "exec-validate"]
    for executor in executors.values():
        (mount,) = executor["pvcMount"]
        assert mount["mountPath"] == "/mnt/project"
        assert mount["pvcNameParameter"]["runtimeValue"]["constant"] == "churn-workspace"


def test_a_volume_without_project_dir_is_a_config_error(tmp_path: Path,
                                                        churn: pd.DataFrame) -> None:
    spec_path = _project(tmp_path / "p", churn, deploy={"kubeflow": {"volume": "ws"}})
    with pytest.raises(ConfigError, match=r"deploy\.kubeflow: volume 'ws' needs project_dir"):
        load_spec(spec_path)
