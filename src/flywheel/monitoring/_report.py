"""The monitoring report: one self-contained HTML page (plots embedded as PNG).

Small on purpose, whatever the window's size: plots are drawn from the drift summaries (30
bins or 12 categories per column) and from the metrics of earlier runs, never from raw rows.
Plots use matplotlib's Agg canvas directly, not pyplot, so no global backend is touched.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flywheel.core.figures import new_figure, png_bytes
from flywheel.monitoring._drift import ColumnDrift
from flywheel.monitoring._result import MonitorResult

__all__ = ["render_report"]

_MAX_PLOTS = 8
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:2em auto;
color:#222;padding:0 1em}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;
border-bottom:1px solid #ddd}table{border-collapse:collapse;font-size:.88em;width:100%}
td,th{border-bottom:1px solid #eee;padding:.3em .5em;text-align:left;vertical-align:top}
.bad{color:#cf222e;font-weight:600}.ok{color:#1a7f37}.note{color:#666;font-size:.85em}
.box{background:#fff8c5;border:1px solid #d4a72c;padding:.6em 1em;border-radius:4px}
.alert{background:#ffebe9;border:1px solid #cf222e;padding:.6em 1em;border-radius:4px}
img{max-width:100%}.tag{font-size:.75em;padding:.1em .4em;border-radius:3px;background:#eee}
"""


def render_report(result: MonitorResult, history: Sequence[Mapping[str, Any]] = ()) -> str:
    """The HTML page for ``result``; ``history`` holds earlier runs' ``{"created", "metrics"}``
    (oldest first) for the over-time plots."""
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Monitoring: "
             f"{e(result.model)} v{e(result.version)}</title><style>{_CSS}</style></head><body>",
             f"<h1>Monitoring: {e(result.model)} version {e(result.version)}</h1>",
             f"<p class='note'>{e(result.task)} task · window: {e(result.window.description)}"
             f" · {result.window.rows:,} rows · reference: {e(result.reference)} · generated "
             f"{e(result.created)} by flywheel</p>"]
    if result.alerts:
        held = " (repeat, held back by the cool-down)"
        items = "".join(f"<li>{e(a.message)}{held if result.held_back(a) else ''}</li>"
                        for a in result.alerts)
        parts.append(f"<div class='alert'><b>{len(result.alerts)} alert(s)</b><ul>{items}</ul>"
                     "</div>")
    else:
        parts.append("<p class='ok'>No alert rule fired.</p>")
    if result.notes:
        items = "".join(f"<li>{e(n)}</li>" for n in result.notes)
        parts.append(f"<div class='box'><b>Partial report</b>: what could not be computed"
                     f"<ul>{items}</ul></div>")
    if result.window.excluded:
        left = ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in result.window.excluded.items())
        parts.append(f"<p class='note'>Rows left out of the window: {e(left)} (shadow "
                     "predictions are never shown to users; failed calls count for the error "
                     "rate; other versions' rows count for input drift and quality only).</p>")
    parts += _drift(result) + _multivariate(result) + _quality(result) + _performance(result)
    parts += _contributions(result) + _operational(result) + _rules(result)
    parts += _history(history, result)
    parts.append("</body></html>")
    return "\n".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], bad: Sequence[bool] = ()) -> str:
    e = html.escape
    head = "<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
    body = []
    for i, row in enumerate(rows):
        cls = " class='bad'" if i < len(bad) and bad[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}g}"


def _drift(result: MonitorResult) -> list[str]:
    drift = result.drift
    if drift is None:
        return ["<h2>Drift</h2><p class='note'>Not computed (see the notes above).</p>"]
    verdict = "DRIFT" if drift.dataset_drift else "no data-set drift"
    out = ["<h2>Drift</h2>",
           f"<p><b class='{'bad' if drift.dataset_drift else 'ok'}'>{verdict}</b>: "
           f"{len(drift.drifted)} of {len(drift.features)} feature columns drifted "
           f"(share {drift.share:.2f}, threshold {drift.drift_share_threshold:.2f}). Tests flag "
           "a column when the p-value is below the significance; distances when the score "
           "is at or above the threshold.</p>"]
    ordered = sorted(drift.columns, key=lambda c: (not c.drifted, c.role != "feature",
                                                   -c.score))
    out.append(_table(["column", "role", "method", "score", "threshold", "p-value", "drifted",
                       "rows (ref / current)"],
                      [[c.column, c.role, c.method, _num(c.score), _num(c.threshold),
                        _num(c.p_value, 3), "yes" if c.drifted else "no",
                        f"{c.reference_rows:,} / {c.current_rows:,}"] for c in ordered],
                      [c.drifted for c in ordered]))
    plotted = [c for c in ordered if c.drifted][:_MAX_PLOTS]
    if plotted:
        out.append("<h3>Reference and current distributions of drifted columns</h3>")
        out.append(_img(_distribution_plot(plotted), "distributions of drifted columns"))
    return out


def _multivariate(result: MonitorResult) -> list[str]:
    m = result.multivariate
    if m is None:
        return []
    top = ", ".join(f"{c} ({share:.0%})" for c, share in m.top_columns) or "none"
    return ["<h2>Multivariate drift (domain classifier)</h2>",
            f"<p>Cross-validated ROC AUC of a classifier telling reference rows from current "
            f"rows: <b class='{'bad' if m.drifted else 'ok'}'>{m.roc_auc:.3f}</b> (threshold "
            f"{m.threshold:.2f}; 0.5 means indistinguishable). Trained on a sample of "
            f"{m.reference_rows:,} reference and {m.current_rows:,} current rows. Columns that "
            f"separate them most (share of split gain): {html.escape(top)}.</p>"]


def _quality(result: MonitorResult) -> list[str]:
    q = result.quality
    if q is None:
        return []
    rows = [[c.column, "missing" if not c.present else _pct(c.null_rate),
             _pct(c.max_null_rate), _pct(c.unseen_rate) + (
                 f" ({', '.join(c.unseen_examples)})" if c.unseen_examples else ""),
             _pct(c.out_of_range_rate)] for c in q.columns]
    bad = [not c.present or (c.null_rate > c.max_null_rate) for c in q.columns]
    out = ["<h2>Data quality</h2>",
           _table(["column", "nulls", "null limit", "unseen categories", "out of range"],
                  rows, bad)]
    if q.violations:
        out.append("<p>Schema checks that fail (as <code>flywheel validate</code> runs them):</p>")
        out.append(_table(["where", "check", "severity", "detail"],
                          [[str(v["column"] or "(table)"), v["check"], v["severity"],
                            v["detail"]] for v in q.violations],
                          [v["severity"] == "error" for v in q.violations]))
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.2%}"


def _performance(result: MonitorResult) -> list[str]:
    p = result.performance
    if p is None:
        return []
    names = list(dict.fromkeys([*p.measured, *(k.removeprefix("estimated_") for k in p.estimated)]))
    level = next(iter(p.measured.values())).confidence if p.measured else 0.95
    rows = []
    for name in names:
        ci = p.measured.get(name)
        measured = f"{ci.value:.4f} [{ci.low:.4f}, {ci.high:.4f}]" if ci else "-"
        rows.append([name, measured, _num(p.estimated.get(f"estimated_{name}")),
                     _num(p.reference.get(name))])
    out = ["<h2>Performance</h2>",
           f"<p><b>Measured</b> on {p.labelled_rows:,} labelled rows (labels from /feedback or "
           f"the data's target column), with {level:.0%} bootstrap intervals. "
           f"<b>Estimated</b> on all {p.rows:,} scored rows without labels.</p>"]
    if p.assumption:
        out.append(f"<p class='box'>{html.escape(p.assumption)}</p>")
    if rows:
        out.append(_table(["metric", f"measured [{level:.0%} CI]", "estimated (CBPE)",
                           "holdout at training"], rows))
    else:
        out.append("<p class='note'>No labels and no estimate for this window.</p>")
    if p.slices:
        first = p.slices[0]
        out.append(f"<h3>Where the model is worst</h3><p>Slices of the labelled rows "
                   f"(category values, quantile ranges, missing values; at least 30 rows) "
                   f"where the metric is worse than on all "
                   f"rows ({first.overall:.4f}), with {level:.0%} bootstrap intervals.</p>")
        out.append(_table(["slice", "rows", "metric", f"{level:.0%} CI"],
                          [[s.condition, f"{s.rows:,}", f"{s.value:.4f}",
                            f"[{s.low:.4f}, {s.high:.4f}]"] for s in p.slices]))
    return out


def _contributions(result: MonitorResult) -> list[str]:
    shift = result.contributions
    if shift is None:
        return []
    return ["<h2>Contributions</h2>",
            f"<p>Share of the mean absolute contribution to the raw score per column (exact "
            f"per-row contributions, as POST /explain returns them), on the reference sample "
            f"and on this window; total variation distance "
            f"<b>{shift.distance:.3f}</b> (metric <code>contribution_shift</code>).</p>",
            _table(["column", "reference share", "current share", "change"],
                   [[c, f"{r:.1%}", f"{w:.1%}", f"{w - r:+.1%}"]
                    for c, r, w in shift.rows()[:15]])]


def _operational(result: MonitorResult) -> list[str]:
    o = result.operational
    if not o:
        return []
    shown = [("requests", "requests"), ("error rate", "error_rate"), ("latency p50 (ms)", "p50_ms"),
             ("latency p99 (ms)", "p99_ms"), ("throughput (requests/s)", "throughput_rps"),
             ("span (s)", "span_seconds")]
    return ["<h2>Operational</h2>",
            _table(["", "value"], [[label, _num(o.get(key), 5)] for label, key in shown
                                   if key in o])]


def _rules(result: MonitorResult) -> list[str]:
    if not result.rules:
        return []
    return ["<h2>Alert rules</h2>",
            _table(["rule", "severity", "value", "result"],
                   [[str(r.rule), r.rule.severity, _num(r.value),
                     "FIRED" if r.fired else ("ok" if r.evaluated else "not evaluated "
                                              "(metric not produced)")] for r in result.rules],
                   [r.fired for r in result.rules])]


def _history(history: Sequence[Mapping[str, Any]], result: MonitorResult) -> list[str]:
    points = [*history, {"created": result.created, "metrics": dict(result.metrics)}]
    if len(points) < 2:
        return ["<h2>Over time</h2><p class='note'>Plots over time appear from the second "
                "run on.</p>"]
    return ["<h2>Over time</h2>", _img(_history_plot(points), "drift and performance over time")]


# Plots ------------------------------------------------------------------------------------


def _img(fig: Any, alt: str) -> str:
    encoded = base64.b64encode(png_bytes(fig)).decode("ascii")
    return f"<p><img alt='{html.escape(alt)}' src='data:image/png;base64,{encoded}'></p>"


def _distribution_plot(columns: Sequence[ColumnDrift]) -> Any:
    cols = 2
    rows = (len(columns) + cols - 1) // cols
    fig = new_figure(10.0, 2.6 * rows, dpi=90)
    for i, c in enumerate(columns):
        ax = fig.add_subplot(rows, cols, i + 1)
        labels, ref, cur = c.shares
        x = np.arange(len(labels))
        if c.kind == "numeric":
            ax.step(x, ref, where="mid", color="#4c72b0", label="reference")
            ax.step(x, cur, where="mid", color="#dd8452", label="current")
            ticks = x[:: max(1, len(x) // 5)]
            ax.set_xticks(ticks, [labels[t] for t in ticks], fontsize=7)
        else:
            ax.bar(x - 0.2, ref, width=0.4, color="#4c72b0", label="reference")
            ax.bar(x + 0.2, cur, width=0.4, color="#dd8452", label="current")
            ax.set_xticks(x, [s[:10] for s in labels], rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{c.column}: {c.method} {c.score:.3g}", fontsize=9)
        ax.set_ylabel("share", fontsize=8)
        if i == 0:
            ax.legend(fontsize=7)
    return fig


def _history_plot(points: Sequence[Mapping[str, Any]]) -> Any:
    import datetime as dt

    times = [dt.datetime.fromisoformat(str(p["created"])) for p in points]
    fig = new_figure(10.0, 3.2, dpi=90)
    drift_ax = fig.add_subplot(1, 2, 1)
    series = [("drift_share", "drift share"), ("multivariate_auc", "domain classifier AUC")]
    for key, label in series:
        values = [p["metrics"].get(key, np.nan) for p in points]
        drift_ax.plot(times, np.asarray(values, dtype=float), marker="o", label=label)
    drift_ax.set_ylim(0, 1.05)
    drift_ax.set_title("Drift", fontsize=10)
    drift_ax.legend(fontsize=7)
    perf_ax = fig.add_subplot(1, 2, 2)
    for key, label, style in (("roc_auc", "ROC AUC (measured)", "-"),
                              ("estimated_roc_auc", "ROC AUC (estimated)", "--"),
                              ("accuracy", "accuracy (measured)", "-"),
                              ("estimated_accuracy", "accuracy (estimated)", "--"),
                              ("r2", "R² (measured)", "-")):
        line = np.asarray([p["metrics"].get(key, np.nan) for p in points], dtype=float)
        if np.isfinite(line).any():
            perf_ax.plot(times, line, linestyle=style, marker="o", label=label)
    perf_ax.set_title("Performance", fontsize=10)
    perf_ax.legend(fontsize=7)
    for ax in (drift_ax, perf_ax):
        ax.tick_params(axis="x", labelsize=7, rotation=30)
    return fig
