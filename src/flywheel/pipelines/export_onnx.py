"""`flywheel export onnx`: a registered version as one verified ONNX graph.

The graph is verified on the version's holdout rows (the rows of the project's data it did not
train on, told apart by ``evaluation/train_rows.json``): every label equal to the pipeline's
and every probability within ``ONNX_TOLERANCE``. The result is recorded with the version, as
``flywheel.onnx.*`` tags and the run artifacts ``onnx/model.onnx`` and
``onnx/verification.json``, whether it verified or not; ``serving.runtime: onnx`` serves only a
graph whose tag says verified (``serving.load_onnx_form``).
"""

from __future__ import annotations

import base64
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from flywheel.core.errors import OnnxExportError, RegistryError
from flywheel.core.spec import Task
from flywheel.features import OnnxReport, onnx_predictor, verify_onnx
from flywheel.pipelines._gating import read_train_rows, row_hashes
from flywheel.pipelines.promote import resolve_version
from flywheel.serving import ONNX_ARTIFACT, ONNX_REPORT_ARTIFACT

if TYPE_CHECKING:
    from flywheel.pipelines._context import ProjectContext
    from flywheel.registry.base import Registry

__all__ = ["OnnxExport", "export_onnx"]


@dataclass(frozen=True)
class OnnxExport:
    """What `export_onnx` wrote and how the graph matched the pipeline."""

    version: str
    path: Path
    report: OnnxReport
    bytes: int


def export_onnx(project: ProjectContext, version: str = "champion", *,
                output: str | Path = "model.onnx", data: str | Path | None = None
                ) -> OnnxExport:
    """Convert ``version`` to ONNX, verify it on its holdout rows, record and write it.

    Raises:
        ModelNotFoundError: If the version does not exist.
        RegistryError: If it has no record of its training rows, or none of the data's rows
            is left out of them.
        OnnxExportError: Naming the step, if a step cannot convert, or naming
            ``verification`` (after recording the failed result) if the graph does not
            reproduce the pipeline.
    """
    registry = project.registry()
    info = resolve_version(registry, version)
    model = registry.load_model(info.version, allow_pickle=project.spec.training.allow_pickle)
    task: Task = info.tags.get("flywheel.task", project.spec.target.task)  # type: ignore[assignment]
    holdout = _holdout(project, registry, info, data)
    predictor = onnx_predictor(model, project.schema, task=task)
    report = verify_onnx(predictor, model, holdout)
    _record(registry, info.version, info.run_id, predictor.model_bytes, report)
    if not report.verified:
        raise OnnxExportError("verification", "onnxruntime", f"the graph does not reproduce "
                              f"version {info.version}: {report.summary()}")
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(predictor.model_bytes)
    return OnnxExport(version=info.version, path=path, report=report,
                      bytes=len(predictor.model_bytes))


def _holdout(project: ProjectContext, registry: Registry, info: Any,
             data: str | Path | None) -> pd.DataFrame:
    record = read_train_rows(registry, info)  # type: ignore[arg-type]
    if record is None:
        raise RegistryError(f"version {info.version} has no record of the rows it trained on "
                            "(evaluation/train_rows.json), so its holdout cannot be told apart; "
                            "train a new version instead.")
    frame = project.load_data(data)
    seen = np.frombuffer(base64.b64decode(record["hashes"]), dtype="<u8")
    columns = [c for c in record["columns"] if c in frame.columns]
    rows = np.flatnonzero(~np.isin(row_hashes(frame, columns), seen))
    if len(rows) == 0:
        raise RegistryError(f"every row of the data was used to train version {info.version}, "
                            "so none is left to verify the ONNX graph on; pass other data of "
                            "the same columns with --data.")
    features = [c for c in project.schema.feature_columns if c in frame.columns]
    return frame.iloc[rows][features].reset_index(drop=True)


def _record(registry: Registry, version: str, run_id: str | None, model_bytes: bytes,
            report: OnnxReport) -> None:
    registry.set_version_tags(version, report.to_tags())
    if run_id is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / Path(ONNX_ARTIFACT).name).write_bytes(model_bytes)
        (folder / Path(ONNX_REPORT_ARTIFACT).name).write_text(report.to_json(), encoding="utf-8")
        registry.log_artifact_folder(run_id, folder, "onnx")
