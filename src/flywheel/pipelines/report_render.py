"""The delivery report as Markdown and as self-contained HTML with plots."""

from __future__ import annotations

import base64
import html
from typing import Any

from flywheel.core.figures import new_figure, png_bytes
from flywheel.pipelines.report import DeliveryReport

__all__ = ["report_html", "report_markdown"]


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _period_rows(report: DeliveryReport) -> list[list[str]]:
    return [[p.period, f"{p.rows:,}", f"{p.labelled:,}", _num(p.deployed), _num(p.baseline),
             _num(None if p.deployed is None or p.baseline is None else p.deployed - p.baseline),
             _num(p.p50_ms, 2), _num(p.p99_ms, 2), p.versions] for p in report.periods]


_PERIOD_HEAD = ["period", "predictions", "labelled", "deployed", "baseline", "difference",
                "p50 ms", "p99 ms", "served by"]


def _facts(report: DeliveryReport) -> list[tuple[str, str]]:
    rate = report.success_rate
    return [
        ("model", report.model), ("champion", f"version {report.champion}"),
        ("metric", report.metric),
        ("deployed (measured, all periods)", _num(report.deployed)),
        (f"baseline: version {report.baseline_version} never retrained", _num(report.baseline)),
        ("deployed - baseline (paired CI, same rows)", _interval(report)),
        ("predictions", f"{report.predictions:,} in {report.requests:,} requests"),
        ("latency p50 / p99 (server)", f"{_num(report.p50_ms, 2)} / {_num(report.p99_ms, 2)} ms"),
        ("throughput", "–" if report.throughput_rps is None
         else f"{report.throughput_rps:,.0f} requests/s while serving"),
        ("reliability", "–" if rate is None else
         f"{rate:.3%} answered ({report.failed:,} failed in the server"
         + (f", {report.client_failed:,} at the client)" if report.client_failed is not None
            else ")")),
    ]


def _interval(report: DeliveryReport) -> str:
    c = report.comparison
    if c is None:
        return "–"
    return (f"{c['gain']:+.4f} ({c['confidence']:.0%} CI {c['low']:+.4f} to {c['high']:+.4f}, "
            f"{c['rows']:,} rows, {c['method']}; positive: deployed better)")


def _event_rows(report: DeliveryReport) -> list[list[str]]:
    """when, what, change (an alias move: who made it), why; every alias change appears."""
    rows = []
    for e in sorted([*report.events, *report.decisions], key=lambda e: e["seq"]):
        when = (e.get("clock") or e["time"])[:16].replace("T", " ")
        change = ""
        if e.get("alias") in ("champion", "challenger"):
            change = f"{e['alias']} {e.get('from') or '-'} → {e.get('to') or '-'} " \
                     f"{e.get('origin', '')}" + (" (forced)" if e.get("forced") else "") \
                     + (" (recovered after a crash)" if e.get("recovered") else "")
        rows.append([when, e["action"], change.strip(), e["reason"]])
    return rows


def report_markdown(report: DeliveryReport) -> str:
    lines = [f"# Delivery report: {report.model}", "", report.summary(), "",
             "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in _facts(report)], ""]
    if report.periods:
        lines += ["## Measured metric over time", "", "| " + " | ".join(_PERIOD_HEAD) + " |",
                  "|" + "---|" * len(_PERIOD_HEAD),
                  *["| " + " | ".join(r) + " |" for r in _period_rows(report)], ""]
    events = _event_rows(report)
    if events:
        lines += ["## Retraining, rollout and alias changes", "",
                  "| when | what | change | why |", "|---|---|---|---|",
                  *[f"| {w} | {a} | {c} | {r.replace('|', '/')} |" for w, a, c, r in events],
                  ""]
    if report.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    return "\n".join(lines)


def report_html(report: DeliveryReport) -> str:
    esc = html.escape
    facts = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in _facts(report))
    body = [f"<h1>Delivery report: {esc(report.model)}</h1>",
            f"<p class=summary>{esc(report.summary())}</p>", f"<table>{facts}</table>"]
    if report.periods:
        body += ["<h2>Measured metric over time</h2>", _img(_metric_plot(report),
                                                           "deployed vs baseline"),
                 _img(_latency_plot(report), "latency and volume"),
                 _table(_PERIOD_HEAD, _period_rows(report))]
    events = _event_rows(report)
    if events:
        body += ["<h2>Retraining, rollout and alias changes</h2>",
                 _table(["when", "what", "change", "why"], events)]
    if report.notes:
        body += ["<h2>Notes</h2><ul>", *[f"<li>{esc(n)}</li>" for n in report.notes], "</ul>"]
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
             "color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid "
             "#ccc;padding:4px 8px;text-align:left;font-size:14px}.summary{font-size:16px;"
             "background:#f4f7fb;padding:12px;border-left:4px solid #3b6ea5}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>Delivery report: "
            f"{esc(report.model)}</title><style>{style}</style></head><body>"
            + "\n".join(body) + "</body></html>")


def _table(head: list[str], rows: list[list[str]]) -> str:
    esc = html.escape
    return ("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>" +
            "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
            + "</table>")


def _img(fig: Any, alt: str) -> str:
    data = base64.b64encode(png_bytes(fig)).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _metric_plot(report: DeliveryReport) -> Any:
    fig = new_figure(10, 3.8)
    ax = fig.add_subplot()
    x = list(range(len(report.periods)))
    labels = [p.period for p in report.periods]
    deployed = [p.deployed for p in report.periods]
    baseline = [p.baseline for p in report.periods]
    ax.plot(x, [float("nan") if v is None else v for v in deployed], "o-", color="#3b6ea5",
            label="deployed (retrained by the loop)")
    ax.plot(x, [float("nan") if v is None else v for v in baseline], "s--", color="#b5651d",
            label=f"version {report.baseline_version}, never retrained")
    for e in report.decisions:
        if e["action"] == "loop_rollout_done" and e.get("promoted") and e.get("clock"):
            key = _period_key(e["clock"], labels)
            if key is not None:
                ax.axvline(key, color="#2a9d54", alpha=0.5, linestyle=":")
                ax.annotate(f"v{e['evidence'].get('version')} promoted", (key, ax.get_ylim()[0]),
                            rotation=90, fontsize=8, color="#2a9d54", va="bottom")
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(report.metric)
    ax.set_title(f"Measured {report.metric} on labelled production traffic")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _latency_plot(report: DeliveryReport) -> Any:
    fig = new_figure(10, 3.0)
    ax = fig.add_subplot(1, 2, 1)
    x = list(range(len(report.periods)))
    labels = [p.period for p in report.periods]
    ax.plot(x, [p.p50_ms or float("nan") for p in report.periods], "o-", label="p50")
    ax.plot(x, [p.p99_ms or float("nan") for p in report.periods], "o-", label="p99")
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("ms (server)")
    ax.set_title("Latency per request")
    ax.legend(fontsize=8)
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.bar(x, [p.rows for p in report.periods], color="#8aa9c9", label="predictions")
    ax2.bar(x, [p.labelled for p in report.periods], color="#3b6ea5", width=0.4,
            label="labelled")
    ax2.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    ax2.set_title("Volume")
    ax2.legend(fontsize=8)
    return fig


def _period_key(clock: str, labels: list[str]) -> int | None:
    for i, label in enumerate(labels):
        if clock.startswith(label) or clock[:len(label)] == label:
            return i
    return None
