"""Hot swap under load, graceful stop, and batch scoring (real servers; slow)."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from flywheel.cli.main import main
from flywheel.serving import read_predictions
from tests.conftest import CHURN, make_project
from tests.integration.conftest import start_server

pytestmark = pytest.mark.slow


def test_promote_and_rollback_under_load_fail_no_request(tmp_path: Path) -> None:
    project = make_project(tmp_path, training={"learners": ["lightgbm"]})
    project.train()
    project.train(seed=7, trials=5)  # version 2, challenger
    registry = project.registry()
    record = json.loads(pd.read_parquet(CHURN)[project.schema.feature_columns]
                        .head(1).to_json(orient="records"))[0]
    server = start_server(tmp_path, poll=0.2)
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    async def load() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            async def worker() -> None:
                while not stop.is_set():
                    response = await client.post("/predict", json=record)
                    statuses.append(response.status_code)
                    versions.append(response.json().get("model_version", "?"))
            await asyncio.gather(*(worker() for _ in range(32)))

    thread = threading.Thread(target=lambda: asyncio.run(load()))
    thread.start()
    try:
        time.sleep(1.5)
        registry.set_alias("champion", "2")   # promote
        time.sleep(2.0)
        registry.set_alias("champion", "1")   # roll back
        time.sleep(2.0)
    finally:
        stop.set()
        thread.join()
        server.stop()
    assert len(statuses) > 200
    assert set(statuses) == {200}
    assert "2" in versions and versions[-1] == "1"
    first_two = versions.index("2")
    assert set(versions[:first_two]) == {"1"}


def test_sigterm_writes_every_logged_prediction(tmp_path: Path) -> None:
    project = make_project(tmp_path, training={"learners": ["linear"]})
    project.train()
    record = json.loads(pd.read_parquet(CHURN)[project.schema.feature_columns]
                        .head(1).to_json(orient="records"))[0]
    server = start_server(tmp_path)
    ids = [httpx.post(server.url + "/predict", json=record).json()["request_id"]
           for _ in range(25)]
    server.stop(signal.SIGTERM)  # well within the 1 s flush interval
    logged = read_predictions(project.workspace.predictions)
    assert set(ids) <= set(logged["request_id"])


def test_batch_scoring_matches_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    project = make_project(tmp_path, training={"learners": ["lightgbm"]})
    project.train()
    out = tmp_path / "scored.parquet"
    assert main(["predict", str(CHURN), "-o", str(out), "--config", str(tmp_path),
                 "--chunk-rows", "1000"]) == 0
    scored = pd.read_parquet(out)
    frame = pd.read_parquet(CHURN)
    expected = project.registry().load_model("champion").predict_proba(
        frame[project.schema.feature_columns])
    assert len(scored) == len(frame)
    assert np.allclose(scored["proba_yes"], expected[:, 1])
    assert set(scored["prediction"]) <= {"no", "yes"}
    assert "scored 5,000 rows" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    frame.drop(columns=["state"]).to_csv(bad, index=False)
    assert main(["predict", str(bad), "-o", str(tmp_path / "x.csv"), "--config",
                 str(tmp_path)]) == 2
    assert not (tmp_path / "x.csv").exists()
