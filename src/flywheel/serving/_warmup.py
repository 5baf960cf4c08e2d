"""Warming a loaded version up before it answers anyone.

A version's first calls are slow: the pipeline's first DataFrame and scikit-learn calls import
and cache (a LightGBM churn pipeline's first call took 37-57 ms, against 8-12 ms once warm), the
compiled predictor and LightGBM touch their tables for the first time, and the interpreter has
not specialised the request path yet. ``warm_up`` runs the input
check, the model and the response serialisation on records made from the schema (ranges,
categories, some missing values) until ``calls`` single records have been answered or
``budget_s`` has passed, plus a few batches, so the first real requests find everything hot.
It runs where a version is loaded (``ModelStore.load``), before the version is swapped in or a
rollout routes to it.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from typing import TYPE_CHECKING, Any

import orjson

from flywheel.data import DataSchema

if TYPE_CHECKING:
    from flywheel.serving._models import ServedModel

__all__ = ["WarmUp", "sample_records", "warm_up"]

log = logging.getLogger("flywheel.serving")

WARMUP_CALLS = 500
WARMUP_BUDGET_S = 1.0
_BATCHES = (2, 8, 32, 128)


@dataclasses.dataclass(frozen=True)
class WarmUp:
    """What a version's warm-up did."""

    calls: int
    """Single-record calls answered (batches not counted)."""
    seconds: float
    error: str | None = None
    """Why the warm-up stopped early (the version still serves)."""


def sample_records(schema: DataSchema, n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` records that fit ``schema``: values within each column's range or categories, and
    about one value in twenty missing."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        record: dict[str, Any] = {}
        for name in schema.feature_columns:
            column = schema.columns[name]
            value: Any
            if rng.random() < 0.05:
                value = None
            elif column.kind in ("numeric", "integer"):
                lo = column.min if column.min is not None else 0.0
                hi = column.max if column.max is not None else lo + 1.0
                value = rng.uniform(lo, hi)
                if column.kind == "integer":
                    value = float(round(value))
            elif column.kind == "categorical":
                value = rng.choice(sorted(column.categories)) if column.categories else \
                    f"warm-up-{rng.randrange(10)}"
            elif column.kind == "boolean":
                value = rng.random() < 0.5
            else:  # datetime
                value = f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T" \
                        f"{rng.randrange(24):02d}:00:00Z"
            record[name] = value
        records.append(record)
    return records


def warm_up(served: ServedModel, *, calls: int = WARMUP_CALLS,
            budget_s: float = WARMUP_BUDGET_S) -> WarmUp:
    """Answer made-up records with ``served`` (never raises: a failure is logged and reported
    in the result, and the version serves anyway)."""
    started = time.perf_counter()
    deadline = started + budget_s
    records = sample_records(served.model.schema, 64)
    done = 0
    try:
        for size in _BATCHES:
            batch = [dict(r) for r in (records * (size // len(records) + 1))[:size]]
            served.checker.check(batch)
            served.answer(batch)
        while done < calls and time.perf_counter() < deadline:
            record = dict(records[done % len(records)])
            rows, _ = served.checker.records(record)
            predictions, probabilities = served.answer(rows)
            orjson.dumps({"model_version": served.version, "predictions": predictions,
                          "probabilities": probabilities}, option=orjson.OPT_SERIALIZE_NUMPY)
            done += 1
    except Exception as exc:  # noqa: BLE001 - warming up must never stop a version loading
        log.warning("warming up version %s stopped after %d calls: %s", served.version, done,
                    exc)
        return WarmUp(done, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    return WarmUp(done, time.perf_counter() - started)
