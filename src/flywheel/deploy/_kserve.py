"""`flywheel export kserve`: the serving image's Dockerfile and KServe InferenceServices.

The image runs `flywheel serve` (Open Inference Protocol v2 over HTTP, readiness on
``/v2/health/ready``) on the project's flywheel.yaml and schema.yaml; it pulls its model from
the registry when it starts, so the registry must be a server the pods reach.

The manifests come in both of KServe's forms:

- ``serverless/``: one InferenceService on Knative. ``inferenceservice.yaml`` serves the
  champion; ``inferenceservice-canary.yaml`` is the same service serving the challenger with
  ``canaryTrafficPercent``: Knative keeps the last revision (the champion) on the rest.
- ``standard/``: RawDeployment mode, where KServe ignores ``canaryTrafficPercent``
  (kserve#5335), so the challenger is a second InferenceService (``<name>-canary``) and a
  Gateway API ``HTTPRoute`` splits traffic between the two predictor Services by weight.

Each pod serves one alias (``FLYWHEEL_SERVE_ALIASES``) and no flywheel rollout runs in it: the
traffic split is KServe's.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from flywheel._version import __version__
from flywheel.core.errors import ConfigError
from flywheel.core.spec import SPEC_FILE, KServeSpec, ProjectSpec

__all__ = ["KServeBundle", "inference_service_name", "write_kserve_bundle"]

PORT_NAME = "http1"  # Knative's name for an HTTP/1.1 port
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
_ALIASES_ENV = "FLYWHEEL_SERVE_ALIASES"  # read by flywheel.pipelines.serve
_PROJECT = "/app/project"


@dataclasses.dataclass(frozen=True)
class KServeBundle:
    """What `write_kserve_bundle` wrote.

    Attributes:
        dockerfile: The serving image's Dockerfile (its build context is the same folder).
        manifests: Every manifest, by form (``serverless``, ``standard``).
        notes: What a reader should know (a setting one form cannot honour).
    """

    dockerfile: Path
    manifests: dict[str, list[Path]]
    notes: tuple[str, ...] = ()


def inference_service_name(spec: ProjectSpec) -> str:
    """``deploy.kserve.name``, else the project name as a DNS label.

    Raises:
        ConfigError: If the project name leaves no valid label.
    """
    if spec.deploy.kserve.name:
        return spec.deploy.kserve.name
    name = re.sub(r"[^a-z0-9]+", "-", spec.name.lower()).strip("-")
    name = re.sub(r"^[^a-z]+", "", name)[:55].strip("-")  # room for "-canary"
    if not name:
        raise ConfigError(f"name: {spec.name!r} leaves no Kubernetes name (a DNS label starts "
                          "with a letter); set deploy.kserve.name.")
    return name


def write_kserve_bundle(spec: ProjectSpec, directory: str | Path) -> KServeBundle:
    """Write the Dockerfile, its build context and both forms of manifests to ``directory``.

    Raises:
        ConfigError: If the registry is local to this machine (the pods could not pull the
            model), or the name is not a valid Kubernetes name.
    """
    _check_registry(spec)
    root = Path(directory)
    context = root / "project"
    context.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec.root / SPEC_FILE, context / SPEC_FILE)
    shutil.copyfile(spec.schema_path, context / spec.schema_path.name)
    dockerfile = root / "Dockerfile"
    dockerfile.write_text(_dockerfile(spec), encoding="utf-8")
    name = inference_service_name(spec)
    kserve = spec.deploy.kserve
    notes: list[str] = []
    documents = {
        "serverless": {
            "inferenceservice.yaml": _isvc(spec, name, "champion", "Serverless"),
            "inferenceservice-canary.yaml": _isvc(spec, name, "challenger", "Serverless",
                                                  canary=kserve.canary_traffic_percent),
        },
        "standard": {
            "inferenceservice.yaml": _isvc(spec, name, "champion", "RawDeployment"),
            "inferenceservice-canary.yaml": _isvc(spec, f"{name}-canary", "challenger",
                                                  "RawDeployment"),
            "httproute.yaml": _route(kserve, name),
        },
    }
    if kserve.autoscaling.metric in ("concurrency", "rps"):
        notes.append(f"standard/: scales on CPU; deploy.kserve.autoscaling.metric "
                     f"{kserve.autoscaling.metric!r} is Knative's (Serverless) only")
    if kserve.autoscaling.min_replicas == 0:
        notes.append("standard/: minReplicas 1; scaling to zero needs Serverless mode")
    manifests: dict[str, list[Path]] = {}
    for form, files in documents.items():
        (root / form).mkdir(parents=True, exist_ok=True)
        manifests[form] = []
        for file_name, document in files.items():
            path = root / form / file_name
            path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
            manifests[form].append(path)
    return KServeBundle(dockerfile=dockerfile, manifests=manifests, notes=tuple(notes))


def _check_registry(spec: ProjectSpec) -> None:
    uri = spec.tracking.tracking_uri
    if uri is None or "://" not in uri or uri.startswith(("sqlite:", "file:")):
        shown = uri or "the default sqlite:///.flywheel/mlflow.db"
        raise ConfigError(
            f"tracking.tracking_uri: the serving pods pull their model from the registry when "
            f"they start, so it must be a server they can reach (http://HOST:PORT of an mlflow "
            f"server, or postgresql://...), not {shown}, a store on this machine. Set "
            "tracking.tracking_uri (and tracking.artifact_location, e.g. s3://...) and train "
            "there.")


def _dockerfile(spec: ProjectSpec) -> str:
    port = spec.deploy.kserve.port
    return f"""\
# The serving image of {spec.name!r}: `flywheel serve`, the Open Inference Protocol v2 on port
# {port}, readiness on {READY_PATH}. The model is pulled from the registry
# ({spec.tracking.tracking_uri}) when the server starts and follows its aliases after.
# Build from this folder: docker build -t {spec.deploy.image} .
FROM python:3.11-slim
# flywheel itself; pass --build-arg FLYWHEEL="..." for a wheel or another version.
ARG FLYWHEEL="flywheel[kubeflow,postgres]=={__version__}"
RUN pip install --no-cache-dir "$FLYWHEEL" boto3
RUN useradd --create-home --uid 1000 flywheel
COPY --chown=flywheel project/ {_PROJECT}/
WORKDIR {_PROJECT}
USER flywheel
ENV FLYWHEEL_CONFIG={_PROJECT}/{SPEC_FILE}
EXPOSE {port}
CMD ["flywheel", "serve", "--host", "0.0.0.0", "--port", "{port}", "--config", \\
     "{_PROJECT}/{SPEC_FILE}"]
"""


def _isvc(spec: ProjectSpec, name: str, alias: str, mode: str, *,
          canary: int | None = None) -> dict[str, Any]:
    kserve = spec.deploy.kserve
    scaling = kserve.autoscaling
    predictor: dict[str, Any] = {}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    if mode == "Serverless":
        predictor.update(minReplicas=scaling.min_replicas, maxReplicas=scaling.max_replicas,
                         scaleMetric=scaling.metric, scaleTarget=scaling.target)
    else:
        predictor.update(minReplicas=max(1, scaling.min_replicas),
                         maxReplicas=scaling.max_replicas)
        if scaling.metric in ("cpu", "memory"):
            predictor.update(scaleMetric=scaling.metric, scaleTarget=scaling.target)
    predictor["containers"] = [_container(spec, alias)]
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name, "namespace": kserve.namespace,
            "labels": {"app.kubernetes.io/part-of": "flywheel",
                       "flywheel.io/project": _label(spec.name), "flywheel.io/alias": alias},
            "annotations": {"serving.kserve.io/deploymentMode": mode},
        },
        "spec": {"predictor": predictor},
    }


def _container(spec: ProjectSpec, alias: str) -> dict[str, Any]:
    kserve = spec.deploy.kserve
    port = kserve.port
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": spec.deploy.image,
        "command": ["flywheel", "serve", "--host", "0.0.0.0", "--port", str(port), "--config",
                 f"{_PROJECT}/{SPEC_FILE}"],
        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "env": [{"name": _ALIASES_ENV, "value": alias}],
        "resources": {kind: getattr(kserve.resources, kind).as_dict()
                      for kind in ("requests", "limits")
                      if getattr(kserve.resources, kind).as_dict()},
        "readinessProbe": {"httpGet": {"path": READY_PATH, "port": port},
                           "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": LIVE_PATH, "port": port},
                          "initialDelaySeconds": 30, "periodSeconds": 10},
    }
    if kserve.env_secret:
        container["envFrom"] = [{"secretRef": {"name": kserve.env_secret}}]
    return container


def _route(kserve: KServeSpec, name: str) -> dict[str, Any]:
    """A Gateway API route splitting traffic between the champion's and the challenger's
    predictor Services (KServe names them ``<isvc>-predictor``, port 80)."""
    gateway_namespace, _, gateway = kserve.gateway.rpartition("/")
    parent = {"name": gateway, **({"namespace": gateway_namespace} if gateway_namespace else {})}
    share = kserve.canary_traffic_percent
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": f"{name}-split", "namespace": kserve.namespace,
                     "labels": {"app.kubernetes.io/part-of": "flywheel"}},
        "spec": {
            "parentRefs": [parent],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [
                    {"name": f"{name}-predictor", "port": 80, "weight": 100 - share},
                    {"name": f"{name}-canary-predictor", "port": 80, "weight": share},
                ],
            }],
        },
    }


def _label(text: str) -> str:
    """``text`` as a Kubernetes label value (63 characters of letters, digits, ``-_.``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.") or "project"
