"""Must-show: a backup taken under load at c=32 and restored elsewhere serves the same champion
with the same checksums and history; a truncated backup is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest

from flywheel import Project
from flywheel.demo import ServerProcess
from flywheel.predlog import read_predictions
from tests.conftest import CHURN, make_project, register_lightgbm
from tests.integration.conftest import start_server

pytestmark = pytest.mark.slow

CLIENTS = 32
FLUSH_SECONDS = 2.0
"""Predictions acknowledged this long before the backup began must be in it (the log's
writer flushes once a second)."""


def flywheel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flywheel.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))


def load(server: ServerProcess, records: list[dict[str, object]], stop: threading.Event,
         answers: list[tuple[float, int, str]]) -> None:
    """One client: POST /predict until ``stop``; (completion time, status, request id)."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        i = 0
        while not stop.is_set():
            response = client.post("/predict", json=records[i % len(records)])
            body = response.json() if response.status_code == 200 else {}
            answers.append((time.time(), response.status_code, str(body.get("request_id"))))
            i += 1


def test_a_backup_under_load_restores_elsewhere_to_the_same_champion_checksums_and_history(
        tmp_path: Path) -> None:
    root = tmp_path / "source"
    project = make_project(root)
    register_lightgbm(project, train_rows=1500, seed=0)
    register_lightgbm(project, train_rows=2500, seed=1)
    project.promote("2", reason="backup under load")
    frame = pd.read_parquet(CHURN).sample(200, random_state=5)
    records = json.loads(frame[project.schema.feature_columns].to_json(orient="records"))
    server = start_server(root)
    answers: list[tuple[float, int, str]] = []
    stop = threading.Event()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            clients = [pool.submit(load, server, records, stop, answers) for _ in range(CLIENTS)]
            time.sleep(5)
            began = time.time()
            taken = flywheel("backup", "-o", str(tmp_path / "backup.tar"), cwd=root)
            ended = time.time()
            time.sleep(2)
            stop.set()
            for client in clients:
                client.result()
        expected = httpx.post(server.url + "/predict", json=records[:20]).json()
    finally:
        stop.set()
        server.stop()
    assert taken.returncode == 0, taken.stderr
    statuses = [status for _, status, _ in answers]
    during = [a for a in answers if began <= a[0] <= ended]
    assert statuses.count(200) == len(statuses) and len(during) > CLIENTS, (
        len(statuses), len(during), sorted(set(statuses)))
    history_before = flywheel("history", cwd=root)
    assert history_before.returncode == 0, history_before.stderr
    checksums = {v.version: v.tags["flywheel.checksum"] for v in project.registry().versions()}

    away = root.with_name("source-away")
    root.rename(away)  # nothing restored may reach into the original folder
    restored_root = tmp_path / "restored"
    restored = flywheel("restore", str(tmp_path / "backup.tar"), str(restored_root), cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    restored_project = Project.load(restored_root)
    assert {v.version: v.tags["flywheel.checksum"]
            for v in restored_project.registry().versions()} == checksums
    history_after = flywheel("history", cwd=restored_root)
    assert history_after.stdout == history_before.stdout and "backup under load" in " ".join(
        history_after.stdout.split())
    logged = set(read_predictions(restored_root / ".flywheel" / "predictions",
                                  with_labels=False)["request_id"])
    acknowledged = {rid for at, status, rid in answers if at < began - FLUSH_SECONDS}
    assert acknowledged and acknowledged <= logged, len(acknowledged - logged)

    second = start_server(restored_root)  # loads the champion, verifying its checksum
    try:
        again = httpx.post(second.url + "/predict", json=records[:20]).json()
        ready = httpx.get(second.url + "/readyz").json()
    finally:
        second.stop()
    assert ready["models"]["champion"] == "2"
    assert again["model_version"] == expected["model_version"] == "2"
    assert again["probabilities"] == expected["probabilities"]

    data = (tmp_path / "backup.tar").read_bytes()
    (tmp_path / "truncated.tar").write_bytes(data[: len(data) * 3 // 4])
    refused = flywheel("restore", str(tmp_path / "truncated.tar"), str(tmp_path / "t"),
                       cwd=tmp_path)
    assert refused.returncode == 2
    assert "truncated or corrupt" in " ".join(refused.stderr.split()), refused.stderr
    assert not (tmp_path / "t").exists()
    print(f"\nbackup under load: {len(answers)} requests at c={CLIENTS}, all 200, "
          f"{len(during)} during the {ended - began:.1f} s backup; {len(acknowledged)} "
          f"acknowledged predictions all restored; champion 2, checksums {checksums}")
