"""Single-row latency of each boosting learner's compiled serving form against its pipeline, and
of one explanation, on churn (the learners' own build functions, 300 rounds, depth 6).

Every call is one record, one thread (as a server worker per core runs it): the pipeline's
``predict_proba`` on a one-row DataFrame, the compiled ``predict_records``, the booster alone
on the encoded row (the anchor), and ``explain_records``. Median and p99 over --calls calls.

    python bench/learner_latency.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.pipeline import Pipeline

from flywheel.core.spec import FeaturesSpec
from flywheel.data import infer_schema
from flywheel.features import (
    build_feature_pipeline,
    compile_predictor,
    contribution_explainer,
    verify_compiled,
)
from flywheel.training import BUILTIN_LEARNERS

CHURN = Path(__file__).resolve().parents[1] / "examples" / "churn" / "mlc_churn.parquet"

PARAMS = {"lightgbm": {"n_estimators": 300, "num_leaves": 63},
          "xgboost": {"n_estimators": 300, "max_depth": 6},
          "catboost": {"n_estimators": 300, "depth": 6}}


def _times(call: Callable[[], Any], calls: int) -> tuple[float, float]:
    for _ in range(50):
        call()
    spent = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        spent.append(time.perf_counter() - start)
    spent.sort()
    return statistics.median(spent) * 1e6, spent[int(0.99 * (len(spent) - 1))] * 1e6


def _measure(name: str, params: dict[str, Any], frame: pd.DataFrame,
             calls: int) -> tuple[list[tuple[float, float]], float]:
    schema = infer_schema(frame, "churn")
    x = frame[schema.feature_columns]
    y = (frame["churn"] == "yes").to_numpy(int)
    estimator = BUILTIN_LEARNERS[name].build(params, "binary", 0, 1)
    model = Pipeline([("features", build_feature_pipeline(schema, FeaturesSpec(),
                                                          task="binary")),
                      ("model", estimator)]).fit(x.iloc[:4000], y[:4000])
    compiled = compile_predictor(model, schema, task="binary")
    report = verify_compiled(compiled, model, x.iloc[4000:])
    assert report.verified and np.isfinite(report.max_abs_diff)
    explainer = contribution_explainer(model, schema, task="binary")
    one = x.iloc[4000:4001]
    record = [{str(k): v for k, v in one.to_dict(orient="records")[0].items()}]
    encoded = compiled.encode_records(record)
    booster = {"lightgbm": lambda: estimator.booster_.predict(encoded, num_threads=1),
               "xgboost": lambda: estimator.get_booster().inplace_predict(encoded),
               "catboost": lambda: estimator.predict(encoded, prediction_type="Probability",
                                                     thread_count=1)}[name]
    return [_times(lambda: model.predict_proba(one), calls),
            _times(lambda: compiled.predict_records(record), calls),
            _times(booster, calls),
            _times(lambda: explainer.explain_records(record), calls // 4)], report.max_abs_diff


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    frame = pd.read_parquet(CHURN)
    table = Table(title=f"churn, one record per call, µs (median / p99 of {args.calls})")
    for column in ("learner", "pipeline", "compiled", "booster alone", "explain", "max diff"):
        table.add_column(column, justify="right")
    for name, params in PARAMS.items():
        cells, diff = _measure(name, params, frame, args.calls)
        table.add_row(name, *(f"{m:.0f} / {p:.0f}" for m, p in cells), f"{diff:.1g}")
    Console().print(table)


if __name__ == "__main__":
    main()
