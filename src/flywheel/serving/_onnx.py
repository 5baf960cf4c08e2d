"""``serving.runtime: onnx``: a version answers through its verified ONNX graph in onnxruntime.

`flywheel export onnx` converts and verifies the graph and records it with the version (tag
``flywheel.onnx.verified``, run artifact ``onnx/model.onnx``); the server loads only a graph
whose tag says verified, and refuses the version otherwise (the loaded models keep serving).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from flywheel.core.errors import OnnxExportError
from flywheel.features import OnnxPredictor
from flywheel.registry.base import Registry

__all__ = ["ONNX_ARTIFACT", "ONNX_REPORT_ARTIFACT", "ONNX_VERIFIED_TAG", "RUNTIMES",
           "load_onnx_form"]

ONNX_ARTIFACT = "onnx/model.onnx"
ONNX_REPORT_ARTIFACT = "onnx/verification.json"
ONNX_VERIFIED_TAG = "flywheel.onnx.verified"
RUNTIMES = ("compiled", "onnx")
"""What ``serving.runtime`` may name: the compiled predictor (the scikit-learn pipeline when
the compiled form was not verified), or the verified ONNX graph."""


def load_onnx_form(registry: Registry, version: str, run_id: str | None,
                   tags: Mapping[str, str]) -> OnnxPredictor:
    """The version's verified ONNX graph, loaded in onnxruntime.

    Raises:
        OnnxExportError: If the version has no verified ONNX form or it does not load.
    """
    verified = tags.get(ONNX_VERIFIED_TAG)
    if verified != "true" or run_id is None:
        state = "failed its verification" if verified == "false" else "was never exported"
        raise OnnxExportError("verification", "onnxruntime", f"version {version}'s ONNX form "
                              f"{state}, and serving.runtime is onnx; run `flywheel export onnx "
                              f"{version}`, or set serving.runtime: compiled")
    with tempfile.TemporaryDirectory() as tmp:
        path = registry.download_artifacts(run_id, ONNX_ARTIFACT, tmp)
        return OnnxPredictor(Path(path).read_bytes())
