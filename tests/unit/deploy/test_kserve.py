"""`flywheel export kserve`: the Dockerfile and both forms of InferenceService manifests, every
object rebuilt through the kserve SDK's and the Kubernetes client's models."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kserve.models as kserve_models  # the kubeflow extra, in dev: never skipped
import kubernetes.client as k8s
import pandas as pd
import pytest
import yaml
from kubernetes.utils import parse_quantity

from flywheel.core.errors import ConfigError
from flywheel.core.spec import load_spec
from flywheel.data import infer_schema
from flywheel.deploy import KServeBundle, write_kserve_bundle

_SCALARS: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "float": (int, float),
                                                "bool": bool}


def rebuild(data: Any, type_name: str, where: str = "") -> Any:
    """``data`` as the SDK model ``type_name`` (kserve's, else Kubernetes'): every key must be
    one the model knows, every value of its type, every required field present (the models'
    own client-side validation)."""
    if type_name.startswith("list["):
        assert isinstance(data, list), f"{where}: expected a list"
        return [rebuild(x, type_name[5:-1], f"{where}[{i}]") for i, x in enumerate(data)]
    if type_name.startswith("dict("):
        value_type = re.fullmatch(r"dict\(([^,]+), (.+)\)", type_name).group(2)  # type: ignore[union-attr]
        assert isinstance(data, dict), f"{where}: expected a mapping"
        return {k: rebuild(v, value_type, f"{where}.{k}") for k, v in data.items()}
    if type_name == "object":
        return data
    if type_name in _SCALARS:
        assert isinstance(data, _SCALARS[type_name]), f"{where}: expected {type_name}"
        return data
    klass = getattr(kserve_models, type_name, None) or getattr(k8s, type_name)
    by_json = {json_name: attr for attr, json_name in klass.attribute_map.items()}
    unknown = set(data) - set(by_json)
    assert not unknown, f"{where}: {type_name} has no field(s) {sorted(unknown)}"
    return klass(**{by_json[k]: rebuild(v, klass.openapi_types[by_json[k]], f"{where}.{k}")
                    for k, v in data.items()})


def round_trip(document: dict[str, Any], type_name: str) -> Any:
    model = rebuild(document, type_name, type_name)
    assert k8s.ApiClient().sanitize_for_serialization(model) == document
    return model


@pytest.fixture
def project(tmp_path: Path, churn: pd.DataFrame) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    churn.to_parquet(root / "churn.parquet")
    infer_schema(churn, "churn", source="churn.parquet").save(root / "schema.yaml")
    raw = {"name": "churn_v2", "data": {"path": "churn.parquet"},
           "target": {"column": "churn", "task": "binary", "positive_class": "yes"},
           "tracking": {"tracking_uri": "http://mlflow.mlops.svc:5000",
                        "artifact_location": "s3://models/churn"},
           "deploy": {"image": "registry.example/churn:3",
                      "kserve": {"namespace": "ml", "canary_traffic_percent": 20,
                                 "env_secret": "churn-registry",
                                 "resources": {"requests": {"cpu": "500m", "memory": "768Mi"},
                                               "limits": {"cpu": 2, "memory": "1Gi"}},
                                 "autoscaling": {"min_replicas": 2, "max_replicas": 6,
                                                 "metric": "rps", "target": 50}}}}
    (root / "flywheel.yaml").write_text(yaml.safe_dump(raw))
    return root / "flywheel.yaml"


@pytest.fixture
def bundle(project: Path, tmp_path: Path) -> KServeBundle:
    return write_kserve_bundle(load_spec(project), tmp_path / "kserve")


def _load(path: Path) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(path.read_text())
    return found


def test_every_inference_service_round_trips_through_the_kserve_and_kubernetes_models(
        bundle: KServeBundle) -> None:
    services = [p for paths in bundle.manifests.values() for p in paths
                if p.name.startswith("inferenceservice")]
    assert len(services) == 4
    for path in services:
        service = round_trip(_load(path), "V1beta1InferenceService")
        container = service.spec.predictor.containers[0]
        assert isinstance(container, k8s.V1Container)
        assert container.readiness_probe.http_get.path == "/v2/health/ready"
        assert container.readiness_probe.http_get.port == 8080
        assert container.ports[0].container_port == 8080
        assert container.command[:2] == ["flywheel", "serve"]
        assert container.env_from[0].secret_ref.name == "churn-registry"
        for amounts in (container.resources.requests, container.resources.limits):
            for quantity in amounts.values():
                parse_quantity(quantity)  # raises on anything Kubernetes would refuse
        assert container.resources.requests == {"cpu": "500m", "memory": "768Mi"}
        assert container.resources.limits == {"cpu": "2", "memory": "1Gi"}


def test_serverless_canary_is_one_service_whose_new_revision_serves_the_challenger(
        bundle: KServeBundle, tmp_path: Path) -> None:
    folder = tmp_path / "kserve" / "serverless"
    stable, canary = _load(folder / "inferenceservice.yaml"), \
        _load(folder / "inferenceservice-canary.yaml")
    assert stable["metadata"]["name"] == canary["metadata"]["name"] == "churn-v2"
    for doc in (stable, canary):
        assert doc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
        assert doc["metadata"]["namespace"] == "ml"
        predictor = doc["spec"]["predictor"]
        assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 6)
        assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("rps", 50)
    assert "canaryTrafficPercent" not in stable["spec"]["predictor"]
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 20

    def alias(doc: dict[str, Any]) -> str:
        env = doc["spec"]["predictor"]["containers"][0]["env"]
        return str(next(e["value"] for e in env if e["name"] == "FLYWHEEL_SERVE_ALIASES"))

    assert (alias(stable), alias(canary)) == ("champion", "challenger")


def test_standard_mode_splits_traffic_with_two_services_and_a_route_not_canary_percent(
        bundle: KServeBundle, tmp_path: Path) -> None:
    folder = tmp_path / "kserve" / "standard"
    stable, canary = _load(folder / "inferenceservice.yaml"), \
        _load(folder / "inferenceservice-canary.yaml")
    for doc in (stable, canary):
        assert doc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == \
            "RawDeployment"
        # Ignored in this mode upstream (kserve#5335): never written, so nobody relies on it.
        assert "canaryTrafficPercent" not in doc["spec"]["predictor"]
        assert "scaleMetric" not in doc["spec"]["predictor"]  # rps is Knative's only
    assert any("rps" in note for note in bundle.notes)
    route = _load(folder / "httproute.yaml")
    # Gateway API is a CRD the Kubernetes client ships no model of: its required shape here.
    assert (route["apiVersion"], route["kind"]) == ("gateway.networking.k8s.io/v1", "HTTPRoute")
    assert route["spec"]["parentRefs"] == [{"name": "kserve-ingress-gateway",
                                            "namespace": "kserve"}]
    backends = route["spec"]["rules"][0]["backendRefs"]
    # KServe's RawDeployment Service of an InferenceService is <name>-predictor on port 80.
    assert {b["name"]: b["weight"] for b in backends} == {
        f"{stable['metadata']['name']}-predictor": 80,
        f"{canary['metadata']['name']}-predictor": 20}
    assert all(b["port"] == 80 for b in backends)


def test_the_dockerfile_serves_the_project_on_the_manifests_port(bundle: KServeBundle,
                                                                 tmp_path: Path) -> None:
    text = bundle.dockerfile.read_text()
    assert text.startswith("# The serving image of 'churn_v2'")
    assert "COPY --chown=flywheel project/ /app/project/" in text
    assert 'CMD ["flywheel", "serve", "--host", "0.0.0.0", "--port", "8080"' in text
    assert "EXPOSE 8080" in text
    context = tmp_path / "kserve" / "project"
    assert sorted(p.name for p in context.iterdir()) == ["flywheel.yaml", "schema.yaml"]


def test_a_registry_on_this_machine_is_refused_because_pods_could_not_pull_the_model(
        project: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(project.read_text())
    raw["tracking"] = {}
    project.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"tracking\.tracking_uri: .*sqlite"):
        write_kserve_bundle(load_spec(project), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    done = subprocess.run([sys.executable, "-m", "flywheel.cli.main", "export", "kserve", "-c",
                           str(project), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "tracking.tracking_uri" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("section", "problem"), [
    ({"kserve": {"resources": {"limits": {"memory": "2 GB"}}}},
     "deploy.kserve.resources.limits.memory: must be a Kubernetes quantity"),
    ({"kserve": {"autoscaling": {"min_replicas": 4, "max_replicas": 2}}},
     "min_replicas (4) must not exceed max_replicas (2)"),
    ({"kserve": {"name": "Churn_Model"}}, "deploy.kserve.name: must be a DNS-1035 label"),
    ({"kserve": {"canary_traffic_percent": 120}},
     "deploy.kserve.canary_traffic_percent: must be <= 100"),
])
def test_bad_deploy_values_are_config_errors_naming_the_field(
        project: Path, section: dict[str, Any], problem: str) -> None:
    raw = yaml.safe_load(project.read_text())
    raw["deploy"] = section
    project.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as caught:
        load_spec(project)
    assert problem in str(caught.value)
