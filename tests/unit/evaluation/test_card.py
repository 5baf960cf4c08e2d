from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from flywheel.core.spec import GatesSpec
from flywheel.evaluation import CardInputs, build_model_card, run_gates
from tests.unit.evaluation.test_gates import _fitted, _inputs


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_card_has_data_metrics_with_intervals_gates_importance_and_its_plot(
        task: str, tmp_path: Path) -> None:
    model, x, y, kinds = _fitted(task, n=400)
    inputs = _inputs(model, x, y, kinds, task=task)
    gates = run_gates(GatesSpec(latency_p99_ms=None, robustness=False), inputs)
    card = build_model_card(CardInputs(
        model_name="churn", version="3", task=task, metric=inputs.metric,  # type: ignore[arg-type]
        model=model, holdout=x, y=y, prediction=inputs.prediction,
        cv_metrics=inputs.cv_metrics, gates=gates, facts={"learner": "linear"},
        data={"fingerprint": "sha256:abc", "rows": 400, "features": list(x.columns)},
        classes=("no", "yes")))
    plot = "calibration.png" if task == "binary" else "residuals.png"
    assert set(card.images) == {"importance.png", plot}
    assert all(png.startswith(b"\x89PNG") for png in card.images.values())
    html = card.html
    assert html.count("data:image/png;base64,") == 2
    assert base64.b64encode(card.images[plot]).decode() in html
    for text in ("Model card: churn version 3", "sha256:abc", "95% CI", "Gates",
                 "Feature importance", "champion"):
        assert text in html
    metric = inputs.metric
    interval = card.intervals[metric]
    assert interval.low <= interval.value <= interval.high
    assert card.importances[0][0] in ("x", "count")  # the columns the label depends on
    page = card.write(tmp_path / "card")
    assert page.name == "model_card.html"
    markdown = (tmp_path / "card" / "model_card.md").read_text()
    assert f"]({plot})" in markdown and (tmp_path / "card" / plot).is_file()
    assert np.isfinite([v.value for v in card.intervals.values()]).all()
