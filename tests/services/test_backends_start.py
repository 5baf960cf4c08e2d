"""The throwaway services the shared-back-end tests run on start for real and hold data."""
from __future__ import annotations

import pytest
import sqlalchemy

pytestmark = pytest.mark.services


def test_the_postgres_cluster_accepts_its_role_and_refuses_a_wrong_password(postgres) -> None:
    engine = sqlalchemy.create_engine(postgres.url())
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
    engine.dispose()
    bad = sqlalchemy.create_engine(postgres.url(password="wrong"))
    with pytest.raises(sqlalchemy.exc.OperationalError, match="password authentication failed"):
        bad.connect()
    bad.dispose()


def test_the_mlflow_server_on_postgres_stores_artifacts_in_the_s3_store(pg_mlflow_server, s3,
                                                                          tmp_path) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=pg_mlflow_server.uri)
    exp = client.create_experiment("backends-start")
    run = client.create_run(exp)
    (tmp_path / "hello.txt").write_text("hi")
    client.log_artifact(run.info.run_id, str(tmp_path / "hello.txt"))
    assert any(key.endswith("hello.txt") for key in s3.keys("flywheel", "mlartifacts"))
