"""Operational health of a window from the prediction log: latency, errors, throughput.

A request with several rows is logged as one row each (ids ``<id>:<i>``) sharing its latency,
so latency percentiles and throughput count requests, not rows. Errors are rows whose model
call failed (the log's ``error`` column); shadow rows are left out before this point.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["operational_metrics"]


def operational_metrics(log: pd.DataFrame) -> dict[str, float]:
    """``requests``, ``errors``, ``error_rate``, ``p50_ms``, ``p99_ms``, ``throughput_rps``
    and ``span_seconds`` of the window (those the log's columns allow)."""
    out: dict[str, float] = {}
    if len(log) == 0:
        return {"requests": 0.0, "errors": 0.0}
    if "request_id" in log.columns:
        base = log["request_id"].astype("string").str.split(":", n=1).str[0]
        first = ~base.duplicated().to_numpy()
    else:
        first = np.ones(len(log), dtype=bool)
    requests = log[first]
    out["requests"] = float(len(requests))
    if "error" in log.columns:
        failed = log["error"].notna().to_numpy()
        out["errors"] = float(failed[first].sum())
        out["error_rate"] = out["errors"] / out["requests"]
    else:
        out["errors"], out["error_rate"] = 0.0, 0.0
    if "latency_ms" in log.columns:
        latency = requests["latency_ms"].to_numpy(dtype=float)
        latency = latency[np.isfinite(latency)]
        if len(latency):
            out["p50_ms"], out["p99_ms"] = (float(v) for v in np.percentile(latency, [50, 99]))
    if "ts" in log.columns:
        ts = pd.to_datetime(log["ts"], utc=True)
        span = (ts.max() - ts.min()).total_seconds()
        if span == span:
            out["span_seconds"] = float(span)
            if span > 0:
                out["throughput_rps"] = out["requests"] / span
    return out
