"""What training stores for monitoring: the reference of the training data, the holdout
predictions and each feature's permutation importance on the holdout
(``monitoring/reference.json``), and the CBPE calibrator fitted on the holdout
(``monitoring/calibration.json``, classifiers only)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from flywheel.data import DataSchema
from flywheel.monitoring import build_reference, fit_calibrator, prediction_columns

if TYPE_CHECKING:
    from flywheel.registry.base import Registry

__all__ = ["CALIBRATION_ARTIFACT", "REFERENCE_ARTIFACT", "log_monitoring_reference",
           "monitoring_kinds"]

REFERENCE_ARTIFACT = "monitoring/reference.json"
CALIBRATION_ARTIFACT = "monitoring/calibration.json"

log = logging.getLogger("flywheel.train")


def monitoring_kinds(schema: DataSchema) -> dict[str, str]:
    """numeric or categorical for each feature column and the target."""
    out = {}
    for name, col in schema.columns.items():
        if col.role in ("feature", "target"):
            out[name] = "numeric" if col.kind in ("numeric", "integer", "datetime") \
                else "categorical"
    if schema.task != "regression":
        out[schema.target] = "categorical"
    return out


def log_monitoring_reference(registry: Registry, run_id: str, *, frame: pd.DataFrame,
                             schema: DataSchema, task: str, classes: tuple[str, ...],
                             y_holdout: np.ndarray, prediction: np.ndarray,
                             seed: int = 0,
                             importances: Sequence[tuple[str, float, float]] | None = None
                             ) -> str | None:
    """Store the reference and calibrator with the run; a failure is recorded as tag
    ``flywheel.monitoring_error`` and returned, never raised (the model is still good).

    Args:
        importances: The model's permutation importances on the holdout, as
            ``evaluation.permutation_importances`` gives them (training measures them once);
            they weigh drifted columns. Without them every column weighs the same.
    """
    try:
        kinds = monitoring_kinds(schema)
        roles = {schema.target: "target"}
        columns = prediction_columns(task, classes,
                                     proba=None if task == "regression" else prediction,
                                     values=prediction if task == "regression" else None)
        extra = {name: (pd.Series(values),
                        "categorical" if name == "prediction.label" else "numeric", "prediction")
                 for name, values in columns.items()}
        importance = ({name: drop for name, drop, _ in importances}
                      if importances is not None else None)
        reference = build_reference(frame, kinds, roles=roles,  # type: ignore[arg-type]
                                    extra=extra, seed=seed,  # type: ignore[arg-type]
                                    importance=importance)
        registry.log_artifact_text(run_id, REFERENCE_ARTIFACT, reference.to_json())
        if task != "regression":
            calibrator = fit_calibrator(y_holdout, prediction, classes)
            registry.log_artifact_text(run_id, CALIBRATION_ARTIFACT, calibrator.to_json())
    except Exception as exc:  # noqa: BLE001 - monitoring data must not undo a trained model
        text = f"{type(exc).__name__}: {exc}"
        log.warning("could not store the monitoring reference: %s", text)
        registry.set_tags(run_id, {"flywheel.monitoring_error": text})
        return text
    return None
