"""Evaluation: metrics, their uncertainty, validation gates and the model card."""

from __future__ import annotations

from flywheel.evaluation._card import (
    CardInputs,
    ModelCard,
    build_model_card,
    permutation_importances,
)
from flywheel.evaluation._gates import (
    ChampionPredictions,
    FastPath,
    GateInputs,
    GateReport,
    GateResult,
    check_gates_config,
    run_gates,
)
from flywheel.evaluation._metrics import (
    DEFAULT_METRIC,
    Metric,
    compute_metrics,
    get_metric,
    summarize,
    task_metrics,
)
from flywheel.evaluation._robustness import RobustnessCheck, run_robustness
from flywheel.evaluation._scores import predict_scores
from flywheel.evaluation._slices import Slice, worst_slices
from flywheel.evaluation._stats import (
    MetricInterval,
    PairedComparison,
    bootstrap_metric,
    compare_paired,
    delong_roc_auc,
)

__all__ = [
    "DEFAULT_METRIC",
    "CardInputs",
    "ChampionPredictions",
    "FastPath",
    "GateInputs",
    "GateReport",
    "GateResult",
    "Metric",
    "MetricInterval",
    "ModelCard",
    "PairedComparison",
    "RobustnessCheck",
    "Slice",
    "bootstrap_metric",
    "build_model_card",
    "check_gates_config",
    "compare_paired",
    "compute_metrics",
    "delong_roc_auc",
    "get_metric",
    "permutation_importances",
    "predict_scores",
    "run_gates",
    "run_robustness",
    "summarize",
    "task_metrics",
    "worst_slices",
]
