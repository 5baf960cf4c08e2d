"""The whole-log read flywheel did before the log was partitioned (the anchor of
predlog_windows.py), kept verbatim in what it does: every Arrow stream of the folder read and
concatenated, then filtered, sorted and sliced; every feedback stream read for the join.

    python bench/_predlog_whole_read.py FOLDER LAST
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa


def read_predictions(folder: Path, last: int) -> pd.DataFrame:
    table = pa.concat_tables(_streams(sorted(folder.glob("pred-*.arrows"))),
                             promote_options="default")
    table = table.sort_by("ts").slice(max(0, table.num_rows - last))
    frame = table.to_pandas()
    labels = pa.concat_tables(_streams(sorted(folder.glob("fb-*.arrows")))).to_pandas()
    labels = labels.sort_values("ts", kind="stable").drop_duplicates("request_id", keep="last")
    return frame.merge(labels.rename(columns={"ts": "label_ts"}), on="request_id", how="left")


def _streams(paths: list[Path]) -> list[pa.Table]:
    tables = []
    for path in paths:
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_stream(source)
            batches = []
            with contextlib.suppress(pa.ArrowInvalid, OSError, StopIteration):
                while True:
                    batch, _ = reader.read_next_batch_with_custom_metadata()
                    batches.append(batch)
            if batches:
                tables.append(pa.Table.from_batches(batches, schema=reader.schema))
    return tables


if __name__ == "__main__":
    started = time.perf_counter()
    rows = read_predictions(Path(sys.argv[1]), int(sys.argv[2]))
    print(json.dumps({"seconds": time.perf_counter() - started, "rows": len(rows)}))
