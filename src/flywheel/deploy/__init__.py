"""Deploy: the project as artefacts for the engines the field runs at scale.

``compile_kubeflow_pipeline`` writes the training as a Kubeflow Pipelines v2 pipeline;
``write_kserve_bundle`` writes the serving image's Dockerfile and KServe InferenceService
manifests. kfp and kserve are optional (``pip install flywheel[kubeflow]``), imported only
when an export runs.
"""

from __future__ import annotations

from flywheel.deploy._kserve import KServeBundle, inference_service_name, write_kserve_bundle
from flywheel.deploy._kubeflow import compile_kubeflow_pipeline, pipeline_name

__all__ = ["KServeBundle", "compile_kubeflow_pipeline", "inference_service_name",
           "pipeline_name", "write_kserve_bundle"]
