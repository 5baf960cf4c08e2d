"""The dashboard in a real browser: Playwright driving Debian's Chromium against `flywheel serve`
during a canary. The page loads, the numbers it shows are the JSON endpoint's (and the CLI's
`--json`), and it changes by itself after a promotion.

A screenshot taken during the canary is kept in ``$FLYWHEEL_DASHBOARD_SHOT`` when it is set.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from flywheel import Project
from flywheel.cli.main import main
from flywheel.demo import ServerProcess
from flywheel.pipelines.rollout import start_rollout, stop_rollout
from flywheel.testing import require_binary
from tests.conftest import CHURN, make_project
from tests.integration.conftest import ADMIN_TOKEN, start_server

pytestmark = pytest.mark.slow

FAST = {"learners": ["linear"], "cv_folds": 2, "search": {"trials": 2, "seed": 0}}
# Chromium on a machine without network: these keep it from stalling on refused connections.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, ServerProcess]]:
    """Champion 1, a canary of version 2 at its first stage (it needs far more evidence to
    move on), 200 answered and labelled requests, one monitoring run."""
    root = tmp_path_factory.mktemp("dashboard")
    project = make_project(root, training=FAST)
    spec_path = root / "flywheel.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["rollout"] = {**raw.get("rollout", {}), "tick_seconds": 0.5}
    spec_path.write_text(yaml.safe_dump(raw))
    project = Project.load(spec_path)
    project.train()
    project.train(seed=3)
    start_rollout(project, "canary", "2", overrides={
        "stages": [20, 100], "min_requests": 1_000_000, "min_labels": 1_000_000})
    server = start_server(root, poll=0.3)
    frame = pd.read_parquet(CHURN).sample(200, random_state=0)
    records = json.loads(frame[project.schema.feature_columns].to_json(orient="records"))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for i, (record, label) in enumerate(zip(records, frame["churn"].astype(str),
                                                strict=True)):
            answer = client.post("/predict", json=record, headers={"x-flywheel-unit": f"u{i}"})
            assert answer.status_code == 200, answer.text
            client.post("/feedback", json={"request_id": answer.json()["request_id"],
                                           "label": label})
    time.sleep(1.5)  # the log's flush interval
    assert main(["monitor", "--config", str(root)]) in (0, 1)  # 1: it alerted
    yield project, server
    server.stop()


def dashboard_json(server: ServerProcess) -> dict[str, Any]:
    answer = httpx.get(server.url + "/dashboard.json", headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_dashboard_shows_the_canary_with_the_json_endpoints_numbers_and_follows_a_promotion(
        canary: tuple[Project, ServerProcess], capsys: pytest.CaptureFixture[str]) -> None:
    from playwright.sync_api import sync_playwright

    project, server = canary
    chromium = require_binary("chromium", "chromium-browser",
                              install="Debian's `chromium` package (apt-get install chromium)")
    root = str(project.spec.root)
    assert httpx.get(server.url + "/dashboard", timeout=10).status_code == 401
    data = dashboard_json(server)
    # The document is the CLI's --json, part for part.
    models = cli_json(capsys, "models", "--config", root)
    assert [(m["version"], m["aliases"]) for m in data["models"]] == \
        [(m["version"], m["aliases"]) for m in models]
    status = cli_json(capsys, "rollout", "status", "--config", root)
    assert data["rollout"]["rollout"]["id"] == status["rollout"]["id"]
    assert data["rollout"]["traffic"] == status["traffic"]
    assert data["served"] == {"champion": "1", "challenger": "2"}
    assert data["monitoring"]["drift"]["columns"]
    assert sum(b["requests"] for b in data["traffic"]) >= 200

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{server.url}/dashboard?token={ADMIN_TOKEN}")
        page.wait_for_selector("[data-testid=rollout-stage]", timeout=20_000)
        shown = dashboard_json(server)  # what the page read, no traffic since
        last = shown["traffic"][-1]
        assert page.text_content("[data-testid=champion]") == "version 1"
        assert page.text_content("[data-testid=rollout-stage]") == \
            str(shown["rollout"]["rollout"]["stage"])
        assert page.text_content("[data-testid=rollout-status]") == "running"
        weights = page.eval_on_selector_all(
            "[data-testid=split] span",
            "spans => spans.map(s => [s.dataset.arm, Number(s.dataset.weight)])")
        assert weights == [[r["arm"], r["weight"]] for r in shown["rollout"]["traffic"]]
        assert page.text_content("[data-testid=p50]") == f"{last['p50_ms']:.2f} ms"
        assert page.text_content("[data-testid=p99]") == f"{last['p99_ms']:.2f} ms"
        assert page.text_content("[data-testid=requests]") == str(last["requests"])
        assert page.text_content("[data-testid=drift-share]") == \
            f"{shown['monitoring']['drift']['share']:.3f}"
        drifted = page.eval_on_selector_all("#drift tr", "rows => rows.map(r => r.dataset.column)")
        assert drifted == [c["column"] for c in shown["monitoring"]["drift"]["columns"]]
        rows = page.eval_on_selector_all("#versions tr", "rows => rows.map(r => r.dataset.version)")
        assert rows == [m["version"] for m in models]
        assert page.eval_on_selector_all("polyline", "lines => lines.length") == 2
        shot = Path(project.spec.root) / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("FLYWHEEL_DASHBOARD_SHOT"):
            shutil.copy(shot, os.environ["FLYWHEEL_DASHBOARD_SHOT"])

        stop_rollout(project, reason="dashboard test: promote by hand")
        assert main(["promote", "2", "--reason", "dashboard test", "--config", root]) == 0
        # The page refreshes itself: no reload.
        deadline = time.monotonic() + 20
        while page.text_content("[data-testid=champion]") != "version 2":
            assert time.monotonic() < deadline, "the page did not show the promotion"
            page.wait_for_timeout(250)
        assert page.text_content("[data-testid=rollout-status]") == "stopped"
        decisions = page.eval_on_selector_all("#decisions tr td:nth-child(3)",
                                              "cells => cells.map(c => c.textContent)")
        assert decisions[0] == "promote"
        browser.close()
    after = dashboard_json(server)
    assert [m["aliases"] for m in after["models"] if m["version"] == "2"] == [["champion"]]


def test_flywheel_dashboard_serves_the_same_document_without_a_prediction_server(
        canary: tuple[Project, ServerProcess], capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess
    import sys

    from flywheel.demo import free_port

    project, server = canary
    root = str(project.spec.root)
    alone = cli_json(capsys, "dashboard", "--config", root)
    served = dashboard_json(server)
    assert alone["served"] is None
    for part in ("models", "rollout", "monitoring", "loop"):
        assert alone[part] == served[part], part
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "flywheel.cli.main", "dashboard", "--config",
                             root, "--port", str(port)],
                            env={**os.environ, "FLYWHEEL_ADMIN_TOKEN": "dash"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/dashboard.json", timeout=1).status_code == 401:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.3)
        answer = httpx.get(url + "/dashboard.json", headers={"Authorization": "Bearer dash"},
                           timeout=30)
        assert answer.status_code == 200
        assert answer.json()["models"] == served["models"]
        assert httpx.get(url + "/dashboard?token=dash").headers["content-type"].startswith(
            "text/html")
        assert httpx.post(url + "/dashboard.json?token=dash").status_code == 405
        assert httpx.get(url + "/predict").status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=30)
