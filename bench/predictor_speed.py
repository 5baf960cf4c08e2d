"""Speed of the compiled serving path against the scikit-learn pipeline, on churn with LightGBM.

Anchor (issue 5): the booster alone on an encoded numpy row. The compiled predictor should cost
tens of microseconds per row, close to the anchor, so that a request fits in 1 ms end to end.
Single-row numbers are the median and p99 over --calls calls, one at a time; throughput is one
call on --rows rows. LightGBM runs with one thread everywhere (as a server worker per core would).

The ONNX form (``flywheel export onnx``) runs in onnxruntime beside them, and its label
agreement and largest probability difference are reported on churn and on the flights model.

    python bench/predictor_speed.py [--calls 2000] [--rows 5000] [--flights-rows 100000]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sklearn.pipeline import Pipeline

from flywheel.core.spec import FeaturesSpec
from flywheel.data import infer_schema
from flywheel.demo import load_flights
from flywheel.features import (
    build_feature_pipeline,
    compile_predictor,
    onnx_predictor,
    verify_compiled,
    verify_onnx,
)

REPO = Path(__file__).resolve().parents[1]
CHURN = REPO / "examples" / "churn" / "mlc_churn.parquet"


def per_call(fn: Callable[[int], Any], calls: int, rows: int) -> tuple[float, float]:
    """Median and p99 seconds of fn(i) over `calls` calls, cycling through `rows` inputs."""
    for i in range(min(100, calls)):
        fn(i % rows)
    gc.collect()
    times = []
    for i in range(calls):
        started = time.perf_counter()
        fn(i % rows)
        times.append(time.perf_counter() - started)
    return statistics.median(times), float(np.percentile(times, 99))


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    fn()
    return min(_timed(fn) for _ in range(repeat))


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--flights-rows", type=int, default=100_000,
                        help="Training rows of the flights model whose ONNX form is checked.")
    args = parser.parse_args()

    frame = pd.read_parquet(CHURN)
    schema = infer_schema(frame, "churn")
    y = (frame["churn"] == "yes").to_numpy(dtype=int)
    x = frame[schema.feature_columns]
    features = build_feature_pipeline(schema, FeaturesSpec(), task="binary")
    estimator = lgb.LGBMClassifier(n_estimators=200, num_leaves=31, learning_rate=0.05,
                                   subsample=0.8, subsample_freq=1, verbosity=-1, n_jobs=1,
                                   random_state=0, deterministic=True, force_row_wise=True)
    estimator.fit(features.fit_transform(x, y), y)
    model = Pipeline([("features", features), ("model", estimator)])
    compiled = compile_predictor(model, schema, task="binary")
    report = verify_compiled(compiled, model, x)
    onnx = onnx_predictor(model, schema, task="binary")

    n = min(args.rows, len(x))
    batch = pd.concat([x] * (args.rows // len(x) + 1), ignore_index=True).head(args.rows)
    rows = [x.iloc[[i]] for i in range(n)]
    records = x.head(n).to_dict(orient="records")
    matrix = features.transform(batch)
    booster = estimator.booster_
    one_thread = {"num_threads": 1}

    single = [
        ("pipeline.predict_proba(DataFrame row)",
         per_call(lambda i: model.predict_proba(rows[i]), args.calls, n)),
        ("pipeline.predict_proba(DataFrame.from_records([record]))",
         per_call(lambda i: model.predict_proba(pd.DataFrame.from_records(
             [records[i]], columns=schema.feature_columns)), args.calls, n)),
        ("compiled.encode_records([record]) (features only)",
         per_call(lambda i: compiled.encode_records([records[i]]), args.calls * 5, n)),
        ("compiled.predict_records([record])",
         per_call(lambda i: compiled.predict_records([records[i]]), args.calls * 5, n)),
        ("onnxruntime: onnx.predict_records([record])",
         per_call(lambda i: onnx.predict_records([records[i]]), args.calls * 5, n)),
        ("booster.predict(numpy row)  [anchor]",
         per_call(lambda i: booster.predict(matrix[i:i + 1], **one_thread), args.calls * 5, n)),
    ]
    batch_records = batch.to_dict(orient="records")
    batch_columns = {c: batch[c].tolist() for c in compiled.feature_columns}
    bulk = [
        ("pipeline.predict_proba(DataFrame)", best_of(lambda: model.predict_proba(batch))),
        ("compiled.predict_records(records)",
         best_of(lambda: compiled.predict_records(batch_records))),
        ("compiled.predict_columns(lists)",
         best_of(lambda: compiled.predict_columns(batch_columns))),
        ("onnxruntime: onnx.predict_columns(lists)",
         best_of(lambda: onnx.predict_columns(batch_columns))),
        ("booster.predict(numpy matrix)  [anchor]",
         best_of(lambda: booster.predict(matrix, **one_thread))),
    ]

    console = Console(width=150)
    anchor_median, anchor_p99 = single[-1][1]
    table = Table(title=f"one row at a time: churn, LightGBM {estimator.n_estimators} trees, "
                        f"{compiled.encoder.width} features; {args.calls:,}+ calls each")
    for heading in ("path", "median µs", "p99 µs", "× anchor (median)", "× anchor (p99)"):
        table.add_column(heading, justify="right" if heading != "path" else "left")
    for name, (median, p99) in single:
        table.add_row(escape(name), f"{median * 1e6:,.1f}", f"{p99 * 1e6:,.1f}",
                      f"{median / anchor_median:,.2f}", f"{p99 / anchor_p99:,.2f}")
    console.print(table)

    anchor_seconds = bulk[-1][1]
    table = Table(title=f"throughput: {args.rows:,} rows in one call (best of 3)")
    for heading in ("path", "ms", "rows/s", "µs/row", "× anchor"):
        table.add_column(heading, justify="right" if heading != "path" else "left")
    for name, seconds in bulk:
        table.add_row(escape(name), f"{seconds * 1e3:,.1f}", f"{args.rows / seconds:,.0f}",
                      f"{seconds / args.rows * 1e6:,.2f}", f"{seconds / anchor_seconds:,.2f}")
    console.print(table)
    print(f"verify_compiled on {report.rows:,} rows: verified={report.verified}, "
          f"max_abs_diff={report.max_abs_diff:.3g}")
    print(f"ONNX (onnxruntime) on churn, {len(x):,} rows: "
          f"{verify_onnx(onnx, model, x).summary()}")
    print(f"ONNX (onnxruntime) on flights: {onnx_flights(args.flights_rows)}")


def onnx_flights(rows: int) -> str:
    """Label agreement and largest probability difference of the flights model's ONNX form
    on the months after its training months (datetime parts, missing indicators, target
    encoding)."""
    frame = load_flights()
    train, holdout = frame[frame["month"] <= 9].tail(rows), frame[frame["month"] > 9]
    schema = infer_schema(train, "late")
    features = build_feature_pipeline(schema, FeaturesSpec(), task="binary")
    y = train["late"].to_numpy(dtype=int)
    x = train[schema.feature_columns]
    estimator = lgb.LGBMClassifier(n_estimators=200, num_leaves=31, learning_rate=0.05,
                                   verbosity=-1, n_jobs=1, random_state=0)
    model = Pipeline([("features", features), ("model", estimator)]).fit(x, y)
    onnx = onnx_predictor(model, schema, task="binary")
    report = verify_onnx(onnx, model, holdout[schema.feature_columns])
    return report.summary()


if __name__ == "__main__":
    main()
