"""A tracking database that is down, refuses the login or lacks the database, and an artifact
bucket that does not exist: one clear error each, nothing half-written; loaded models keep
serving through a database outage. Real PostgreSQL clusters and moto's S3 server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest

from flywheel.testing import PostgresCluster, require_postgres
from tests.conftest import CHURN
from tests.integration.conftest import start_server
from tests.services.postgres_project import (
    PASSWORD_VAR,
    pg_uri,
    run_cli,
    set_tracking,
    tracked_project,
)

pytestmark = pytest.mark.services

QUICK = {"learners": ["linear"], "cv_folds": 2, "search": {"trials": 2, "seed": 0}}


@pytest.fixture(scope="module")
def outage_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    """A cluster of this module's own, so stopping it leaves the session's alone."""
    require_postgres()
    with PostgresCluster(tmp_path_factory.mktemp("outage-pg"), password="outage-pw-8d1f") as pg:
        yield pg


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, outage_pg: PostgresCluster
            ) -> Iterator[Path]:
    root = tracked_project(tmp_path_factory.mktemp("faults"),
                           {"tracking_uri": pg_uri(outage_pg), "retries": 1,
                            "connect_timeout_seconds": 2}, **QUICK)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PASSWORD_VAR, outage_pg.password)
        ran = run_cli(root, "train")
        assert ran.code == 0, ran.text
        yield root


def assert_clean_failure(ran: object, *, password: str, says: str) -> None:
    text = ran.text  # type: ignore[attr-defined]
    assert ran.code == 2, text  # type: ignore[attr-defined]
    assert says in text, text
    assert password not in text
    assert "Traceback" not in text and "bug in flywheel" not in text


def test_a_stopped_database_is_one_clear_error_naming_the_uri_without_its_password(
        trained: Path, outage_pg: PostgresCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_VAR, outage_pg.password)
    outage_pg.stop()
    try:
        for command in (["models"], ["train", "--trials", "3"], ["history"]):
            ran = run_cli(trained, *command)
            # The tracking store or the coordination database (on the same one) says so first.
            assert_clean_failure(ran, password=outage_pg.password, says="connection refused")
            assert f"postgresql://flywheel:***@127.0.0.1:{outage_pg.port}/flywheel" in ran.text
            assert "Check that the database server is running" in ran.text
            assert ran.seconds < 60
    finally:
        outage_pg.restart()
        outage_pg.wait_ready()
    assert run_cli(trained, "models").code == 0


def test_a_wrong_password_is_one_clear_error_and_is_never_printed(
        trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_VAR, "not-the-password-77")
    for command in (["models"], ["train"]):
        ran = run_cli(trained, *command)
        assert_clean_failure(ran, password="not-the-password-77",
                             says="password authentication failed for user 'flywheel'")


def test_a_missing_database_is_one_clear_error_naming_it(
        tmp_path: Path, outage_pg: PostgresCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_VAR, outage_pg.password)
    root = tracked_project(tmp_path, {"tracking_uri": pg_uri(outage_pg, database="nosuchdb")})
    ran = run_cli(root, "models")
    assert_clean_failure(ran, password=outage_pg.password,
                         says="the database 'nosuchdb' does not exist")
    assert "createdb -O flywheel nosuchdb" in ran.text


def test_a_password_variable_that_is_not_set_is_a_config_error_naming_it(
        trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_VAR, raising=False)
    ran = run_cli(trained, "models")
    assert ran.code == 2, ran.text
    assert f"names the environment variable(s) {PASSWORD_VAR}, which is not set" in ran.text
    assert "Traceback" not in ran.text


def test_libpq_s_own_pgpassword_works_without_naming_it_in_the_uri(
        trained: Path, outage_pg: PostgresCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_VAR, raising=False)
    monkeypatch.setenv("PGPASSWORD", outage_pg.password)
    spec = (trained / "flywheel.yaml").read_text()
    set_tracking(trained, tracking_uri=f"postgresql://{outage_pg.user}@{outage_pg.host}:"
                                       f"{outage_pg.port}/{outage_pg.database}")
    try:
        ran = run_cli(trained, "models", "--json")
    finally:
        (trained / "flywheel.yaml").write_text(spec)
    assert ran.code == 0, ran.text
    assert [v["version"] for v in json.loads(ran.out)] == ["1"]
    assert outage_pg.password not in ran.text


def test_an_artifact_bucket_that_does_not_exist_fails_training_leaving_no_run_running_and_no_version(
        tmp_path: Path, outage_pg: PostgresCluster, s3: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_VAR, outage_pg.password)
    for key, value in s3.env().items():  # type: ignore[attr-defined]
        monkeypatch.setenv(key, value)
    url = outage_pg.create_database("nobucket")
    root = tracked_project(tmp_path, {"tracking_uri": pg_uri(outage_pg, database="nobucket"),
                                      "artifact_location": "s3://no-such-bucket/flywheel"},
                           **QUICK)
    ran = run_cli(root, "train")
    assert ran.code == 1, ran.text
    assert "the bucket 'no-such-bucket' does not exist" in ran.text
    assert "Traceback" not in ran.text and "bug in flywheel" not in ran.text
    client = mlflow.MlflowClient(tracking_uri=url)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    assert "RUNNING" not in {r.info.status for r in runs}
    assert client.search_model_versions() == []


def test_loaded_models_keep_serving_while_the_database_is_down(
        trained: Path, outage_pg: PostgresCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_VAR, outage_pg.password)
    record = json.loads(pd.read_parquet(CHURN).drop(columns=["churn"]).head(1)
                        .to_json(orient="records"))[0]
    server = start_server(trained, poll=0.3)
    statuses: list[int] = []
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.post("/predict", json=record).status_code == 200
            outage_pg.stop(mode="immediate")
            try:
                deadline = time.monotonic() + 6  # several of the store's polls
                while time.monotonic() < deadline:
                    statuses.append(client.post("/predict", json=record).status_code)
                    time.sleep(0.05)
            finally:
                outage_pg.restart()
                outage_pg.wait_ready()
            after = [client.post("/predict", json=record).status_code for _ in range(20)]
    finally:
        server.stop()
    assert len(statuses) > 20 and set(statuses) == {200}
    assert set(after) == {200}
    log = (trained / ".flywheel" / "serve.log").read_text()
    assert outage_pg.password not in log
