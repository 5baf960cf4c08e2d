"""Local Parquet files read by Ray Data row group by row group.

``ray.data.read_parquet`` makes one read task per file. ``map_batches`` fuses into the read, so
a single large file is read *and scored* by one task on one CPU however many the cluster has
(measured: the Ray engine at 0.47x the local engine on one 2 M-row file with two CPUs).
``read_row_groups`` gives Ray Data one read task per run of row groups instead, in file and
row-group order, so every CPU scores a part of the file. Each task reads its row groups with
pyarrow exactly as the local engine does (``ParquetFile.iter_batches``), so the Arrow types are
the file's own.

A file with a single row group is still one task: row groups are the smallest unit a Parquet
reader can start at without reading what comes before.

Ray is imported only inside the functions.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["RowGroupRun", "plan_row_group_runs", "read_row_groups"]


@dataclasses.dataclass(frozen=True)
class RowGroupRun:
    """Consecutive row groups of one file: what one read task reads."""

    path: str
    groups: tuple[int, ...]
    rows: int
    size_bytes: int
    """Uncompressed size, as the file's footer records it."""


def plan_row_group_runs(paths: list[str], *, min_rows: int) -> tuple[list[RowGroupRun],
                                                                     pa.Schema]:
    """The read tasks for ``paths``, in order: each file's row groups cut into runs of at
    least ``min_rows`` rows (a file's last run may be shorter), and the first file's schema.

    Raises:
        OSError, pyarrow.ArrowException: If a file's footer cannot be read.
    """
    runs: list[RowGroupRun] = []
    schema: pa.Schema | None = None
    for path in paths:
        handle = pq.ParquetFile(path)
        if schema is None:
            schema = handle.schema_arrow
        meta = handle.metadata
        groups: list[int] = []
        rows = size = 0
        for k in range(meta.num_row_groups):
            group = meta.row_group(k)
            groups.append(k)
            rows += group.num_rows
            size += group.total_byte_size
            if rows >= min_rows:
                runs.append(RowGroupRun(path, tuple(groups), rows, size))
                groups, rows, size = [], 0, 0
        if groups:
            runs.append(RowGroupRun(path, tuple(groups), rows, size))
    if schema is None:
        raise OSError("no Parquet file to read")
    return runs, schema


def _read_run(run: RowGroupRun, batch_rows: int) -> Iterator[pa.Table]:
    handle = pq.ParquetFile(run.path)
    for batch in handle.iter_batches(batch_size=batch_rows, row_groups=list(run.groups)):
        yield pa.Table.from_batches([batch])


def read_row_groups(ray: Any, paths: list[str], *, batch_rows: int) -> Any:
    """A Ray Dataset over the local Parquet ``paths`` with one read task per run of row groups
    (at least ``batch_rows`` rows each), yielding tables of at most ``batch_rows`` rows.

    Raises:
        OSError, pyarrow.ArrowException: If a file's footer cannot be read.
    """
    # By name, not ``from ray.data import ...``: type-checking flywheel then does not analyse
    # all of Ray Data.
    data = importlib.import_module("ray.data")
    Datasource: Any = data.Datasource
    ReadTask, BlockMetadata = data.ReadTask, importlib.import_module("ray.data.block").BlockMetadata

    runs, schema = plan_row_group_runs(paths, min_rows=batch_rows)

    class ParquetRowGroups(Datasource):  # type: ignore[misc]  # Any: see above
        def estimate_inmemory_data_size(self) -> int:
            return sum(run.size_bytes for run in runs)

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[Any]:
            # The runs decide the parallelism: a row group cannot be split, and more runs
            # than CPUs keep every CPU busy to the end.
            return [ReadTask(functools.partial(_read_run, run, batch_rows),
                             BlockMetadata(num_rows=run.rows, size_bytes=run.size_bytes,
                                           input_files=(run.path,), exec_stats=None),
                             schema=schema, per_task_row_limit=per_task_row_limit)
                    for run in runs]

    return ray.data.read_datasource(ParquetRowGroups(), override_num_blocks=len(runs))
