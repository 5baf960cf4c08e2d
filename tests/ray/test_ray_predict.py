"""`flywheel predict --engine ray` on the two-node cluster: Ray Data's output equals the local
engine's row for row, from a folder or a glob; a path it cannot read is a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.core.errors import DataError
from flywheel.core.rayconnect import connect_ray
from flywheel.features import FEATURE_TRUSTED_TYPES
from flywheel.pipelines._ray_parquet import read_row_groups
from flywheel.pipelines.predict import predict_file, predict_with_ray
from flywheel.testing import RayCluster
from tests.conftest import CHURN, PASSED_TAGS, REPO, make_project

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, fitted):  # type: ignore[no-untyped-def]
    """A churn project whose champion is the fitted model, its compiled form verified."""
    root = tmp_path_factory.mktemp("ray-predict")
    project = make_project(root)
    model, x = fitted
    registry = project.registry()
    with registry.parent_run("test") as run_id:
        logged = registry.log_model(run_id, model, input_example=x.head(3),
                                    extra_trusted_types=list(FEATURE_TRUSTED_TYPES),
                                    pyfunc_predict_fn="predict_proba")
        registry.register(logged, tags={**PASSED_TAGS, "flywheel.task": "binary",
                                        "flywheel.classes": json.dumps(["no", "yes"]),
                                        "flywheel.compiled.verified": "true"})
    return project


def _parts(folder: Path, parts: int = 3) -> pd.DataFrame:
    frame = pd.read_parquet(CHURN)
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(frame) // parts)
    for k in range(parts):
        frame.iloc[k * size:(k + 1) * size].to_parquet(folder / f"part-{k}.parquet", index=False)
    return frame


def test_ray_data_scores_a_folder_exactly_as_the_local_engine_scores_the_whole_file(
        tmp_path: Path, project, ray_cluster: RayCluster) -> None:  # type: ignore[no-untyped-def]
    frame = _parts(tmp_path / "in")
    frame.to_parquet(tmp_path / "whole.parquet", index=False)
    local = predict_file(project, tmp_path / "whole.parquet", tmp_path / "local.parquet",
                         chunk_rows=700)
    ray = predict_with_ray(project, str(tmp_path / "in"), str(tmp_path / "ray.parquet"),
                           address=ray_cluster.address, chunk_rows=1000)
    assert ray["rows"] == local["rows"] == len(frame)
    assert ray["form"] == local["form"] == "compiled"
    expected = pq.read_table(tmp_path / "local.parquet")
    got = pq.read_table(tmp_path / "ray.parquet")
    assert got.schema.names == [*frame.columns, "prediction", "proba_no", "proba_yes"]
    assert got.equals(expected)
    source = pq.read_schema(tmp_path / "whole.parquet")
    assert [got.schema.field(n).type for n in source.names] == list(source.types)  # Arrow kept
    assert got.schema.field("prediction").type == pa.string()


def test_one_file_of_five_row_groups_is_read_in_five_tasks_and_scored_as_the_local_engine_does(
        tmp_path: Path, project, ray_cluster: RayCluster) -> None:  # type: ignore[no-untyped-def]
    frame = pd.read_parquet(CHURN)
    source = tmp_path / "one.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), source,
                   row_group_size=1000)
    ray, owned = connect_ray(ray_cluster.address, cpus=1, setting="test")
    try:  # Ray Data's read_parquet reads one file in one task, so on one CPU
        blocks = read_row_groups(ray, [str(source)], batch_rows=1000).materialize()
        assert blocks.num_blocks() == 5 and blocks.count() == len(frame)
    finally:
        if owned:
            ray.shutdown()
    predict_file(project, source, tmp_path / "local.parquet", chunk_rows=1000)
    result = predict_with_ray(project, str(source), str(tmp_path / "ray.parquet"),
                              address=ray_cluster.address, chunk_rows=1000)
    assert result["rows"] == len(frame)
    assert pq.read_table(tmp_path / "ray.parquet").equals(pq.read_table(tmp_path / "local.parquet"))


def test_a_glob_scored_into_a_folder_gives_ray_datas_part_files_with_the_same_rows(
        tmp_path: Path, project, ray_cluster: RayCluster) -> None:  # type: ignore[no-untyped-def]
    frame = _parts(tmp_path / "in", parts=2)
    result = predict_with_ray(project, str(tmp_path / "in" / "part-*.parquet"),
                              str(tmp_path / "out"), address=ray_cluster.address)
    assert result["rows"] == len(frame)
    written = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "out").glob("*.parquet"))])
    assert len(written) == len(frame)
    assert list(written.columns) == [*frame.columns, "prediction", "proba_no", "proba_yes"]
    assert written["proba_yes"].between(0, 1).all()


def test_a_folder_with_a_file_that_is_not_parquet_is_a_data_error_naming_it(
        tmp_path: Path, project, ray_cluster: RayCluster) -> None:  # type: ignore[no-untyped-def]
    _parts(tmp_path / "in", parts=2)
    (tmp_path / "in" / "part-9.parquet").write_bytes(b"not parquet at all" * 10)
    with pytest.raises(DataError, match="Ray Data cannot read it") as caught:
        predict_with_ray(project, str(tmp_path / "in"), str(tmp_path / "ray.parquet"),
                         address=ray_cluster.address)
    assert str(tmp_path / "in") in str(caught.value)
    assert not (tmp_path / "ray.parquet").exists()


def test_the_cli_refuses_a_glob_that_matches_nothing_with_exit_2_before_ray_starts(
        tmp_path: Path, project) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        [sys.executable, "-m", "flywheel.cli.main", "predict", str(tmp_path / "no-*.parquet"),
         "-o", str(tmp_path / "out.parquet"), "--engine", "ray", "--config",
         str(project.spec.root)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "matches no file" in done.stderr and "Traceback" not in done.stderr
