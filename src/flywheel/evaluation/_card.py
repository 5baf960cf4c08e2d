"""The model card: what a version was trained on, how good it is (with intervals), which gates
it passed, what it relies on, and how its errors look. One self-contained HTML page (plots
embedded as PNG) and a Markdown file with the PNGs beside it.

Kept small on purpose: plots of summaries (importance bars, a binned calibration curve, a few
thousand residuals at most), never raw rows. Plots use matplotlib's Agg canvas directly, not
pyplot, so no global backend is touched.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flywheel.core.figures import new_figure, png_bytes
from flywheel.core.spec import Task
from flywheel.core.workspace import atomic_write_bytes, atomic_write_text
from flywheel.evaluation._gates import GateReport
from flywheel.evaluation._metrics import get_metric, task_metrics
from flywheel.evaluation._robustness import predict_fn
from flywheel.evaluation._slices import Slice, worst_slices
from flywheel.evaluation._stats import MetricInterval, bootstrap_metric

__all__ = ["CardInputs", "ModelCard", "build_model_card", "permutation_importances"]

HTML_NAME = "model_card.html"
MARKDOWN_NAME = "model_card.md"
_IMPORTANCE_ROWS = 1000
_IMPORTANCE_REPEATS = 3
_TOP_FEATURES = 15
_RESIDUAL_POINTS = 2000


@dataclasses.dataclass(frozen=True)
class CardInputs:
    """What a card is made of.

    Attributes:
        model_name, version: The registered model and its version.
        facts: Short labelled facts shown first (learner, run id, spec hash, ...).
        data: Data facts: fingerprint, rows, columns, target.
        holdout / y / prediction: The holdout rows, their labels and the model's prediction.
        classes: Class labels by code (classification).
    """

    model_name: str
    version: str
    task: Task
    metric: str
    model: Any
    holdout: pd.DataFrame
    y: np.ndarray
    prediction: np.ndarray
    cv_metrics: Mapping[str, float]
    gates: GateReport | None
    facts: Mapping[str, str]
    data: Mapping[str, Any]
    classes: tuple[str, ...] = ()
    seed: int = 0
    contributions: Mapping[str, float] | None = None
    """Global importance from the exact per-row contributions: mean absolute contribution to
    the raw score per column, largest first (None: the model has none)."""


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """A rendered card: the HTML page, the Markdown, and the PNG plots by file name."""

    html: str
    markdown: str
    images: dict[str, bytes]
    intervals: dict[str, MetricInterval]
    importances: list[tuple[str, float, float]]
    slices: list[Slice] = dataclasses.field(default_factory=list)
    """Where the optimized metric is worst on the holdout (error analysis)."""

    def write(self, folder: str | Path) -> Path:
        """Write ``model_card.html``, ``model_card.md`` and the PNGs; returns the HTML path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in self.images.items():
            atomic_write_bytes(folder / name, data)
        atomic_write_text(folder / MARKDOWN_NAME, self.markdown)
        atomic_write_text(folder / HTML_NAME, self.html)
        return folder / HTML_NAME


def build_model_card(inputs: CardInputs) -> ModelCard:
    """Compute the card's numbers and plots and render both formats."""
    n = len(inputs.y)
    resamples = 1000 if n <= 20_000 else 300
    intervals = {}
    for name in task_metrics(inputs.task):
        try:
            intervals[name] = bootstrap_metric(inputs.task, name, inputs.y, inputs.prediction,
                                               resamples=resamples, seed=inputs.seed)
        except ValueError:
            continue
    importances = permutation_importances(inputs.model, inputs.holdout, inputs.y,
                                          task=inputs.task, metric=inputs.metric,
                                          seed=inputs.seed)
    images = {"importance.png": _importance_plot(importances)}
    if inputs.task == "regression":
        images["residuals.png"] = _residual_plot(inputs.y, inputs.prediction, inputs.seed)
    else:
        images["calibration.png"] = _calibration_plot(inputs.y, inputs.prediction,
                                                      inputs.classes)
    slices = worst_slices(inputs.task, inputs.metric, inputs.holdout, inputs.y,
                          inputs.prediction, seed=inputs.seed)
    sections = [*_sections(inputs, intervals, importances), *_error_sections(inputs, slices)]
    return ModelCard(html=_render_html(inputs, sections, images),
                     markdown=_render_markdown(inputs, sections, images),
                     images=images, intervals=intervals, importances=importances,
                     slices=slices)


def permutation_importances(model: Any, frame: pd.DataFrame, y: np.ndarray, *, task: Task,
                            metric: str, seed: int = 0) -> list[tuple[str, float, float]]:
    """(column, mean drop of ``metric``, its std) per raw column, largest drop first.

    The drop is measured on up to 1,000 holdout rows, each column shuffled 3 times; a positive
    drop means the model relies on the column.
    """
    from sklearn.inspection import permutation_importance

    m = get_metric(task, metric)
    predict = predict_fn(model, task)
    sign = 1.0 if m.greater_is_better else -1.0
    rng = np.random.default_rng(seed)
    if len(frame) > _IMPORTANCE_ROWS:
        rows = np.sort(rng.choice(len(frame), size=_IMPORTANCE_ROWS, replace=False))
        frame, y = frame.iloc[rows].reset_index(drop=True), np.asarray(y)[rows]

    def score(_: Any, x: pd.DataFrame, target: np.ndarray) -> float:
        return sign * m.compute(target, predict(x))

    result = permutation_importance(model, frame, y, scoring=score,
                                    n_repeats=_IMPORTANCE_REPEATS, random_state=seed, n_jobs=1)
    found = [(str(c), float(mu), float(sd)) for c, mu, sd in
             zip(frame.columns, result.importances_mean, result.importances_std, strict=True)]
    return sorted(found, key=lambda item: -item[1])


# Plots ------------------------------------------------------------------------------------


def _importance_plot(importances: list[tuple[str, float, float]]) -> bytes:
    top = importances[:_TOP_FEATURES][::-1]
    fig = new_figure(6.0, max(2.0, 0.3 * len(top) + 1.0))
    ax = fig.add_subplot()
    ax.barh([t[0] for t in top], [t[1] for t in top], xerr=[t[2] for t in top],
            color="#4c72b0", ecolor="#555555")
    ax.axvline(0, color="#999999", linewidth=0.8)
    ax.set_xlabel("drop of the metric when the column is shuffled")
    ax.set_title("Permutation importance (holdout)")
    return png_bytes(fig)


def _calibration_plot(y: np.ndarray, pred: np.ndarray, classes: tuple[str, ...]) -> bytes:
    p = pred if pred.ndim == 2 else np.column_stack([1 - pred, pred])
    if p.shape[1] == 2:
        confidence, hit = p[:, 1], (np.asarray(y) == 1).astype(float)
        label = f"P({classes[1] if len(classes) > 1 else 'positive'})"
    else:  # multiclass: the top class's probability against how often it is right
        confidence, hit = p.max(axis=1), (p.argmax(axis=1) == np.asarray(y)).astype(float)
        label = "probability of the predicted class"
    edges = np.unique(np.quantile(confidence, np.linspace(0, 1, 11)))
    bins = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, len(edges) - 2) \
        if len(edges) > 1 else np.zeros(len(confidence), dtype=int)
    mean_p = [confidence[bins == b].mean() for b in np.unique(bins)]
    rate = [hit[bins == b].mean() for b in np.unique(bins)]
    fig = new_figure(6.0, 4.2)
    ax = fig.add_subplot(2, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", label="perfectly calibrated")
    ax.plot(mean_p, rate, marker="o", color="#4c72b0", label="model (deciles)")
    ax.set_ylabel("observed rate")
    ax.set_title("Calibration (holdout)")
    ax.legend(loc="upper left", fontsize=8)
    hist = fig.add_subplot(2, 1, 2, sharex=ax)
    hist.hist(confidence, bins=20, range=(0, 1), color="#8c8c8c")
    hist.set_xlabel(label)
    hist.set_ylabel("rows")
    return png_bytes(fig)


def _residual_plot(y: np.ndarray, pred: np.ndarray, seed: int) -> bytes:
    residual = np.asarray(y) - np.asarray(pred)
    keep = np.arange(len(residual))
    if len(keep) > _RESIDUAL_POINTS:
        keep = np.random.default_rng(seed).choice(len(keep), _RESIDUAL_POINTS, replace=False)
    fig = new_figure(8.0, 3.4)
    ax = fig.add_subplot(1, 2, 1)
    ax.scatter(np.asarray(pred)[keep], residual[keep], s=5, alpha=0.4, color="#4c72b0")
    ax.axhline(0, color="#999999", linewidth=0.8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual - predicted")
    ax.set_title(f"Residuals ({len(keep):,} of {len(residual):,} rows)")
    hist = fig.add_subplot(1, 2, 2)
    hist.hist(residual, bins=40, color="#8c8c8c")
    hist.set_xlabel("actual - predicted")
    hist.set_title("Residual distribution")
    return png_bytes(fig)


# Rendering --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def _sections(inputs: CardInputs, intervals: Mapping[str, MetricInterval],
              importances: list[tuple[str, float, float]]) -> list[_Table]:
    facts = _Table("Model", ["", ""], [[k, str(v)] for k, v in inputs.facts.items()])
    data = _Table("Data", ["", ""], [[k, _fmt(v)] for k, v in inputs.data.items()])
    level = next(iter(intervals.values())).confidence if intervals else 0.95
    metric_rows = []
    for name, ci in intervals.items():
        cv, std = inputs.cv_metrics.get(name), inputs.cv_metrics.get(f"{name}_std")
        mark = " (optimized)" if name == inputs.metric else ""
        metric_rows.append([name + mark, f"{ci.value:.4f}", f"[{ci.low:.4f}, {ci.high:.4f}]",
                            f"{cv:.4f} ± {std:.4f}" if cv is not None and std is not None
                            else "-"])
    resamples = next(iter(intervals.values())).resamples if intervals else 0
    metrics = _Table("Metrics", ["metric", "holdout", f"{level:.0%} CI", "cross-validation"],
                     metric_rows, f"Holdout of {len(inputs.y):,} rows, never used in the search; "
                                  f"intervals from {resamples} bootstrap resamples.")
    tables = [facts, data, metrics]
    if inputs.gates is not None:
        tables.append(_Table("Gates", ["gate", "result", "detail"],
                             [[r.name, r.status.upper(), r.reason] for r in inputs.gates.results],
                             inputs.gates.summary()))
    tables.append(_Table("Feature importance", ["column", "drop of " + inputs.metric, "std"],
                         [[c, f"{mu:+.4f}", f"{sd:.4f}"]
                          for c, mu, sd in importances[:_TOP_FEATURES]],
                         "Permutation importance on the holdout: how much the metric worsens "
                         "when the column's values are shuffled."))
    return tables


def _error_sections(inputs: CardInputs, slices: list[Slice]) -> list[_Table]:
    tables = []
    if inputs.contributions is not None:
        tables.append(_Table(
            "Contributions", ["column", "mean |contribution|"],
            [[c, f"{v:.4g}"] for c, v in list(inputs.contributions.items())[:_TOP_FEATURES]],
            "Mean absolute contribution to the raw score on the holdout, from the exact "
            "per-row contributions POST /explain returns."))
    overall = f"{slices[0].overall:.4f}" if slices else "-"
    tables.append(_Table(
        "Where the model is worst", ["slice", "rows", inputs.metric, "95% CI"],
        [[s.condition, f"{s.rows:,}", f"{s.value:.4f}", f"[{s.low:.4f}, {s.high:.4f}]"]
         for s in slices],
        f"Holdout slices (category values, quantile ranges, missing values) of at least 30 "
        f"rows where {inputs.metric} is worse than on all rows ({overall}); intervals from "
        "200 bootstrap resamples." if slices else
        f"No slice of at least 30 holdout rows has a worse {inputs.metric} than all rows."))
    return tables


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:960px;margin:2em auto;
color:#222;padding:0 1em}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;
border-bottom:1px solid #ddd}table{border-collapse:collapse;font-size:.9em;width:100%}
td,th{border-bottom:1px solid #eee;padding:.3em .5em;text-align:left;vertical-align:top}
.PASS{color:#1a7f37;font-weight:600}.FAIL{color:#cf222e;font-weight:600}.SKIP{color:#777}
.note{color:#666;font-size:.85em}img{max-width:100%}
"""


def _render_html(inputs: CardInputs, tables: list[_Table], images: Mapping[str, bytes]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Model card: "
             f"{e(inputs.model_name)} v{e(inputs.version)}</title><style>{_CSS}</style></head>"
             f"<body><h1>Model card: {e(inputs.model_name)} version {e(inputs.version)}</h1>"
             f"<p class='note'>{e(inputs.task)} task, generated "
             f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by flywheel</p>"]
    for table in tables:
        parts.append(f"<h2>{e(table.title)}</h2>")
        if table.note:
            parts.append(f"<p class='note'>{e(table.note)}</p>")
        parts.append("<table>")
        if any(table.header):
            parts.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in table.header) + "</tr>")
        for row in table.rows:
            cells = "".join(f"<td class='{e(c)}'>{e(c)}</td>" if c in ("PASS", "FAIL", "SKIP")
                            else f"<td>{e(c)}</td>" for c in row)
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</table>")
        if table.title == "Feature importance":
            parts.append(_img(images["importance.png"], "permutation importance"))
    plot = "calibration.png" if "calibration.png" in images else "residuals.png"
    parts.append(f"<h2>{'Calibration' if plot == 'calibration.png' else 'Residuals'}</h2>")
    parts.append(_img(images[plot], plot.removesuffix(".png")))
    parts.append("</body></html>")
    return "\n".join(parts)


def _img(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f"<p><img alt='{html.escape(alt)}' src='data:image/png;base64,{encoded}'></p>"


def _render_markdown(inputs: CardInputs, tables: list[_Table],
                     images: Mapping[str, bytes]) -> str:
    lines = [f"# Model card: {inputs.model_name} version {inputs.version}", "",
             f"{inputs.task} task, generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC "
             "by flywheel.", ""]
    for table in tables:
        lines += [f"## {table.title}", ""]
        if table.note:
            lines += [table.note, ""]
        header = table.header if any(table.header) else ["", ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in table.rows]
        lines.append("")
        if table.title == "Feature importance":
            lines += ["![permutation importance](importance.png)", ""]
    plot = "calibration.png" if "calibration.png" in images else "residuals.png"
    lines += [f"## {'Calibration' if plot == 'calibration.png' else 'Residuals'}", "",
              f"![{plot.removesuffix('.png')}]({plot})", ""]
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
