"""The Ray engine's plan for local Parquet files: row groups cut into runs, one read task
each, so one large file is scored on every CPU (Ray Data's own reader makes one task of it)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.pipelines._ray_parquet import _read_run, plan_row_group_runs


def _file(path: Path, rows: int, group: int) -> Path:
    table = pa.table({"n": pa.array(range(rows), type=pa.int64()),
                      "s": pa.array([f"v{k}" for k in range(rows)])})
    pq.write_table(table, path, row_group_size=group)
    return path


def test_one_file_of_five_row_groups_becomes_three_runs_of_at_least_the_batch_rows(
        tmp_path: Path) -> None:
    path = _file(tmp_path / "a.parquet", 5_000, 1_000)
    runs, schema = plan_row_group_runs([str(path)], min_rows=2_000)
    assert [(r.groups, r.rows) for r in runs] == [((0, 1), 2_000), ((2, 3), 2_000),
                                                  ((4,), 1_000)]
    assert schema.names == ["n", "s"]


def test_the_runs_read_back_every_row_in_file_order_with_the_file_s_types(
        tmp_path: Path) -> None:
    first = _file(tmp_path / "a.parquet", 2_500, 1_000)
    second = _file(tmp_path / "b.parquet", 700, 1_000)
    runs, _ = plan_row_group_runs([str(first), str(second)], min_rows=1_000)
    assert len(runs) == 4  # 1000, 1000, 500 of a; 700 of b
    read = pa.concat_tables(t for run in runs for t in _read_run(run, 300))
    expected = pa.concat_tables([pq.read_table(first), pq.read_table(second)])
    assert read.equals(expected)
    assert max(t.num_rows for run in runs for t in _read_run(run, 300)) == 300


def test_a_file_that_is_not_parquet_fails_the_plan(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet" * 10)
    with pytest.raises((OSError, pa.ArrowException)):
        plan_row_group_runs([str(bad)], min_rows=10)
