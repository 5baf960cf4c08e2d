"""The ``deploy:`` section of flywheel.yaml: how `flywheel export kubeflow|kserve` ship the
project to Kubernetes (the image, the training step's resources, the serving pods' resources,
autoscaling and canary share).

Quantities are Kubernetes quantities (``500m``, ``2``, ``1Gi``), checked here; what one engine
accepts of them more narrowly (Kubeflow Pipelines wants a whole number of memory units) is
checked by its exporter, which names the field.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from flywheel.core._section import Section as _Section

__all__ = ["AutoscalingSpec", "ComputeSpec", "DeploySpec", "KServeSpec", "KubeflowSpec",
           "ResourcesSpec"]

# Kubernetes' resource.Quantity: a decimal number and an optional binary or decimal suffix.
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
# A DNS-1035 label: what an InferenceService, a Service and a Deployment may be named.
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
# A DNS-1123 subdomain: what a PersistentVolumeClaim may be named.
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?"
                            r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class ResourcesSpec(_Section):
    """CPU and memory, as Kubernetes quantities; null leaves the amount to the cluster."""

    cpu: str | None = None
    """Cores: ``500m``, ``1``, ``2.5``."""
    memory: str | None = None
    """Bytes: ``512Mi``, ``2Gi``."""

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _check_quantity(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = f"{value:g}"
        if value is not None and (not isinstance(value, str) or not _QUANTITY.match(value)):
            raise ValueError(f"must be a Kubernetes quantity such as 500m, 2, 512Mi or 2Gi, "
                             f"got {value!r}")
        return value

    def as_dict(self) -> dict[str, str]:
        """The amounts that are set, as a Kubernetes resource list."""
        return {k: v for k, v in (("cpu", self.cpu), ("memory", self.memory)) if v is not None}


class ComputeSpec(_Section):
    """What a container asks for (requests) and may not exceed (limits)."""

    requests: ResourcesSpec = ResourcesSpec(cpu="1", memory="1Gi")
    limits: ResourcesSpec = ResourcesSpec(cpu="2", memory="2Gi")


class AutoscalingSpec(_Section):
    """How many serving pods, scaled on what (KServe's minReplicas, maxReplicas, scaleMetric
    and scaleTarget)."""

    min_replicas: int = Field(1, ge=0, le=1000)
    """Fewest pods; 0 lets Serverless mode scale to zero (Standard mode needs at least 1)."""
    max_replicas: int = Field(3, ge=1, le=1000)
    metric: Literal["concurrency", "rps", "cpu", "memory"] = "concurrency"
    """concurrency and rps: Knative's autoscaler (Serverless); cpu and memory: a
    HorizontalPodAutoscaler (Standard)."""
    target: int = Field(10, ge=1)
    """Target per pod: concurrent requests, requests per second, or percent utilisation."""

    @model_validator(mode="after")
    def _check_range(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must not exceed max_replicas "
                             f"({self.max_replicas})")
        return self


class KServeSpec(_Section):
    """The InferenceServices `flywheel export kserve` writes."""

    name: str | None = None
    """The InferenceService's name (a DNS label); null: the project name, lower-cased with
    dashes."""
    namespace: str = "default"
    port: int = Field(8080, ge=1, le=65535)
    """The port `flywheel serve` listens on inside the pod."""
    canary_traffic_percent: int = Field(10, ge=0, le=100)
    """The challenger's share of traffic while it is rolled out beside the champion."""
    resources: ComputeSpec = ComputeSpec()
    autoscaling: AutoscalingSpec = AutoscalingSpec()
    gateway: str = Field("kserve/kserve-ingress-gateway", pattern=r"^([a-z0-9-]+/)?[a-z0-9-]+$")
    """Standard mode: the Gateway API Gateway (NAMESPACE/NAME) whose HTTPRoute splits traffic
    between the champion and the challenger (KServe's own Gateway by default)."""
    env_secret: str | None = None
    """A Kubernetes Secret whose keys become the pods' environment (the tracking server's
    credentials, AWS_* for S3 artefacts); null: none."""

    @field_validator("name", "namespace")
    @classmethod
    def _check_label(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_LABEL.match(value):
            raise ValueError("must be a DNS-1035 label: lower-case letters, digits and dashes, "
                             f"starting with a letter, at most 63 characters; got {value!r}")
        return value


class KubeflowSpec(_Section):
    """The pipeline `flywheel export kubeflow` compiles."""

    project_dir: str | None = None
    """Where every step finds the project folder (flywheel.yaml, schema.yaml, the data and
    the workspace); on a cluster, a volume mounted into each step. null: this project's folder,
    which is what a local run (kfp.local) needs."""
    volume: str | None = None
    """A PersistentVolumeClaim mounted at project_dir in every step (it holds the project and
    its workspace: the steps share them); null: none, as a local run needs. Needs project_dir."""
    resources: ComputeSpec = ComputeSpec(requests=ResourcesSpec(cpu="2", memory="4Gi"),
                                         limits=ResourcesSpec(cpu="2", memory="4Gi"))
    """The train step's resources (the other steps are light)."""


    @field_validator("volume")
    @classmethod
    def _check_volume(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_SUBDOMAIN.match(value):
            raise ValueError("must be a PersistentVolumeClaim name: lower-case letters, digits, "
                             f"'-' and '.', at most 253 characters; got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_mount(self) -> KubeflowSpec:
        if self.volume is not None and self.project_dir is None:
            raise ValueError(f"volume {self.volume!r} needs project_dir, the path to mount it "
                             "at (such as /mnt/project)")
        return self


class DeploySpec(_Section):
    image: str = Field("flywheel:latest", min_length=1)
    """The image every pipeline step and serving pod runs: flywheel with the `kubeflow`
    extra, built from the Dockerfile `flywheel export kserve` writes."""
    kubeflow: KubeflowSpec = KubeflowSpec()
    kserve: KServeSpec = KServeSpec()
