"""At registration: compile the model to its fast serving form and verify it on holdout rows."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from flywheel.core.errors import CompileError, OnnxExportError
from flywheel.core.spec import Task
from flywheel.data import DataSchema
from flywheel.features import (
    CompiledPredictor,
    OnnxPredictor,
    compile_predictor,
    onnx_predictor,
    verify_compiled,
    verify_onnx,
)
from flywheel.registry.base import Registry
from flywheel.serving import ONNX_ARTIFACT

ATOL = 1e-6
"""Largest absolute difference from the pipeline's output the fast form may show."""


def compile_for_serving(model: Any, schema: DataSchema, task: Task, holdout: pd.DataFrame,
                        *, runtime: str = "compiled"
                        ) -> tuple[CompiledPredictor | OnnxPredictor | None, dict[str, str]]:
    """The compiled form if it reproduces the pipeline on ``holdout`` (else None), and version
    tags saying so; with ``runtime`` onnx, the verified ONNX form instead.

    The gates measure latency on what this returns; the server compiles the model again when
    it loads it (compilation is deterministic) and uses the fast form only when the tags say it
    was verified. The ONNX graph is stored with the run (``log_onnx_form``).

    Raises:
        OnnxExportError: With runtime onnx, naming the step that cannot convert, or
            ``verification`` if the graph does not reproduce the pipeline on ``holdout``.
    """
    if runtime == "onnx":
        onnx = onnx_predictor(model, schema, task=task)
        checked = verify_onnx(onnx, model, holdout)
        if not checked.verified:
            raise OnnxExportError("verification", "onnxruntime", "serving.runtime is onnx but "
                                  f"the graph does not reproduce the model: {checked.summary()}")
        return onnx, checked.to_tags()
    try:
        compiled = compile_predictor(model, schema, task=task)
    except CompileError as exc:
        return None, {"flywheel.compiled.verified": "false",
                      "flywheel.compiled.error": str(exc)[:500]}
    report = verify_compiled(compiled, model, holdout, atol=ATOL)
    return (compiled if report.verified else None), report.to_tags()


def log_onnx_form(registry: Registry, run_id: str, form: object) -> None:
    """Store the ONNX graph ``compile_for_serving`` verified with the run (``onnx/model.onnx``),
    where ``serving.runtime: onnx`` loads it; nothing for another form."""
    if not isinstance(form, OnnxPredictor):
        return
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / Path(ONNX_ARTIFACT).name).write_bytes(form.model_bytes)
        registry.log_artifact_folder(run_id, tmp, str(Path(ONNX_ARTIFACT).parent))
