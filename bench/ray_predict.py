"""`flywheel predict --engine ray` against the local engine on a 10 M-row Parquet file, both
against the in-process limit of the compiled predictor on the same rows.

The rows are churn's 5,000 tiled to ``--rows``; the model is a LightGBM pipeline fitted on churn
and registered with its compiled form verified (as `flywheel train` registers it). Anchor: the
local engine (one process: read, score, write). Targets: the Ray engine at least 0.8x the local
engine's rows per second, output identical column by column. The in-process limit is the
compiled predictor alone on the rows already in memory, in 50,000-row batches, one thread: what
no engine that scores on one core can beat; the Ray engine scores on ``--cpus`` cores.

Ray's start-up is timed apart (a `flywheel predict --engine ray` pays it once per command) and
the end-to-end ratio including it is printed too. The tiled file is made once and kept in
``--cache`` (row groups of 200,000 rows, as a writer of large files makes them).

    python bench/ray_predict.py [--rows 10000000] [--cpus 2] [--cache /tmp/flywheel-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table
from sklearn.pipeline import Pipeline

from flywheel import Project
from flywheel.core.rayconnect import connect_ray
from flywheel.core.spec import FeaturesSpec
from flywheel.features import (
    FEATURE_TRUSTED_TYPES,
    build_feature_pipeline,
    compile_predictor,
    verify_compiled,
)
from flywheel.pipelines.predict import CHUNK_ROWS, predict_file, predict_with_ray

REPO = Path(__file__).resolve().parents[1]
CHURN = REPO / "examples" / "churn" / "mlc_churn.parquet"


def registered_project(root: Path) -> Project:
    """A churn project whose champion is a LightGBM pipeline, compiled form verified."""
    shutil.copy(CHURN, root / "churn.parquet")
    project = Project.init(root / "churn.parquet", "churn", directory=root)
    frame = pq.read_table(CHURN).to_pandas()
    schema = project.schema
    x, y = frame[schema.feature_columns], (frame["churn"] == "yes").to_numpy(int)
    model = Pipeline([("features", build_feature_pipeline(schema, FeaturesSpec(), task="binary",
                                                          scale_numeric=False)),
                      ("model", lgb.LGBMClassifier(n_estimators=200, num_leaves=31,
                                                   verbose=-1, n_jobs=1))]).fit(x, y)
    report = verify_compiled(compile_predictor(model, schema, task="binary"), model, x.head(1000))
    registry = project.registry()
    with registry.parent_run("bench") as run_id:
        logged = registry.log_model(run_id, model, input_example=x.head(3),
                                    extra_trusted_types=list(FEATURE_TRUSTED_TYPES),
                                    pyfunc_predict_fn="predict_proba")
        registry.register(logged, tags={"flywheel.task": "binary",
                                        "flywheel.classes": json.dumps(["no", "yes"]),
                                        "flywheel.gates.passed": "true", **report.to_tags()})
    return project


def tiled(cache: Path, rows: int) -> Path:
    """Churn's rows tiled to ``rows``, written once into ``cache`` and reused."""
    path = cache / f"churn-tiled-{rows}.parquet"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    base = pq.read_table(CHURN).replace_schema_metadata(None)
    block = pa.concat_tables([base] * 40)
    partial = path.with_suffix(".partial")
    with pq.ParquetWriter(partial, base.schema) as writer:
        written = 0
        while written < rows:
            part = block.slice(0, rows - written)
            writer.write_table(part)
            written += part.num_rows
    partial.rename(path)
    return path


def identical(a: Path, b: Path) -> bool:
    """Column by column (so two 10 M-row tables never sit in memory at once)."""
    names = pq.read_schema(a).names
    if names != pq.read_schema(b).names:
        return False
    return all(pq.read_table(a, columns=[n]).equals(pq.read_table(b, columns=[n]))
               for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) /
                        "flywheel-bench")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = registered_project(root)
        source = tiled(args.cache, args.rows)
        meta = pq.ParquetFile(source).metadata
        rows = meta.num_rows
        console.print(f"{rows:,} rows in {meta.num_row_groups} row groups, "
                      f"{source.stat().st_size / 1e6:.0f} MB of Parquet; load average "
                      f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

        from flywheel.pipelines._scoring import load_scorer

        scorer, _ = load_scorer(project, "champion")
        table = pq.read_table(source)
        began = time.perf_counter()
        for batch in table.to_batches(max_chunksize=CHUNK_ROWS):
            scorer.scores(pa.Table.from_batches([batch]))
        limit = time.perf_counter() - began
        del table

        began = time.perf_counter()
        predict_file(project, source, root / "local.parquet")
        local = time.perf_counter() - began

        began = time.perf_counter()
        ray, _ = connect_ray(None, cpus=args.cpus, setting="bench")  # as the CLI starts it
        startup = time.perf_counter() - began
        began = time.perf_counter()
        result = predict_with_ray(project, str(source), str(root / "ray.parquet"),
                                  workers=args.cpus)
        on_ray = time.perf_counter() - began
        ray.shutdown()
        same = identical(root / "local.parquet", root / "ray.parquet")
        if result["rows"] != rows:
            raise SystemExit(f"the Ray engine wrote {result['rows']} rows of {rows}")
        console.print(f"load average {os.getloadavg()[0]:.2f} at the end")

    table_out = Table(title=f"Batch scoring of {rows:,} rows (LightGBM, compiled form)")
    for column in ("path", "seconds", "rows/s", "vs local engine"):
        table_out.add_column(column, justify="left" if column == "path" else "right")
    for name, seconds in (("compiled predictor in process (limit, 1 thread, no I/O)", limit),
                          ("local engine (anchor)", local),
                          (f"Ray engine, {args.cpus} CPUs (Ray already up)", on_ray),
                          ("Ray engine incl. Ray start-up", on_ray + startup)):
        table_out.add_row(name, f"{seconds:.1f}", f"{rows / seconds:,.0f}",
                          f"{local / seconds:.2f}x")
    console.print(table_out)
    console.print(f"Ray engine / local engine rows/s: {local / on_ray:.2f}x (target >= 0.80; "
                  f"{local / (on_ray + startup):.2f}x with Ray's {startup:.1f} s start-up); "
                  f"outputs identical: {same}")


if __name__ == "__main__":
    main()
