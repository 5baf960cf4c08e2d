"""Rollouts decided by a real server (`flywheel serve`, its controller in a background thread)
under simulated traffic with labels from the churn data.

One project, three versions: 1 a clearly worse model (WeakClassifier), 2 LightGBM, 3 a strong
model that raises on 5 % of calls in the server (ChaosClassifier with $FLYWHEEL_CHAOS=0.05).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from flywheel import Project
from flywheel.cli.main import main
from flywheel.demo import ServerProcess
from flywheel.pipelines.promote import history
from flywheel.pipelines.rollout import rollout_status, start_rollout
from flywheel.serving import read_predictions
from tests.conftest import CHURN, make_project
from tests.integration.conftest import start_server

pytestmark = pytest.mark.slow

LEARNERS = {
    "weak": {"name": "weak", "estimator": "tests.estimators.WeakClassifier"},
    "chaos": {"name": "chaos", "estimator": "tests.estimators.ChaosClassifier"},
}
CANARY = {"stages": [25, 100], "min_requests": 60, "min_labels": 30}


def train(root: Path, learner: str) -> str:
    spec_path = root / "flywheel.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["training"]["learners"] = [learner]
    raw["training"]["custom_learners"] = [LEARNERS[learner]] if learner in LEARNERS else []
    spec_path.write_text(yaml.safe_dump(raw))
    result = Project.load(root).train()
    assert result.gates.passed, result.gates.summary()
    return result.version.version


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, ServerProcess]]:
    root = tmp_path_factory.mktemp("rollout-server")
    make_project(root, training={"cv_folds": 2, "search": {"trials": 2, "seed": 0}})
    spec_path = root / "flywheel.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["gates"] = {"champion": {"mode": "off"}}
    raw["rollout"] = {"tick_seconds": 0.5}
    spec_path.write_text(yaml.safe_dump(raw))
    assert [train(root, name) for name in ("weak", "lightgbm", "chaos")] == ["1", "2", "3"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLYWHEEL_CHAOS", "0.05")
        server = start_server(root, poll=0.3)
    yield Project.load(root), server
    server.stop()


@pytest.fixture(scope="module")
def traffic(setup: tuple[Project, ServerProcess]) -> tuple[list[dict[str, object]], list[str]]:
    project, _ = setup
    frame = pd.read_parquet(CHURN).sample(2000, random_state=1)
    records = json.loads(frame[project.schema.feature_columns].to_json(orient="records"))
    return records, frame["churn"].astype(str).tolist()


def drive(server: ServerProcess, traffic: tuple[list[dict[str, object]], list[str]],
          done: Callable[[], bool], *, limit: int = 3000, start: int = 0) -> list[httpx.Response]:
    """Send requests (each from its own unit) and their true labels until ``done``."""
    records, labels = traffic
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for i in range(start, start + limit):
            record, label = records[i % len(records)], labels[i % len(labels)]
            response = client.post("/predict", json=record,
                                   headers={"x-flywheel-unit": f"user-{i}"})
            answers.append(response)
            if response.status_code == 200:
                client.post("/feedback", json={"request_id": response.json()["request_id"],
                                               "label": label})
            if i % 25 == 24 and done():
                break
    return answers


def finished(project: Project) -> Callable[[], bool]:
    return lambda: not rollout_status(project, fresh=False).state.running


def test_canary_promotes_a_clearly_better_challenger(setup, traffic) -> None:
    project, server = setup
    start_rollout(project, "canary", "2", overrides=CANARY)
    answers = drive(server, traffic, finished(project))
    _wait_until(finished(project))
    state = rollout_status(project, fresh=False).state
    assert state.status == "promoted", state.decision
    assert project.registry().alias_version("champion") == "2"
    assert {r.status_code for r in answers} == {200}
    assert {r.json()["model_version"] for r in answers} == {"1", "2"}
    entry = [e for e in history(project).entries if e.action == "rollout_promote"][0]
    metric = entry.evidence["decision"]["checks"]["metric"]
    assert metric["challenger"] > metric["champion"] + 0.1


def test_canary_rolls_back_a_clearly_worse_challenger(setup, traffic) -> None:
    project, server = setup
    start_rollout(project, "canary", "1", overrides=CANARY)
    answers = drive(server, traffic, finished(project), start=3000)
    state = rollout_status(project, fresh=False).state
    assert state.status == "rolled_back"
    assert project.registry().alias_version("champion") == "2"
    assert {r.status_code for r in answers} == {200}
    breached = " ".join(state.decision["breached"])
    assert "accuracy" in breached or "divergence" in breached
    assert history(project).entries[-1].action == "rollout_rollback"


def test_canary_rolls_back_a_challenger_failing_on_five_percent_with_no_user_errors(
        setup, traffic) -> None:
    project, server = setup
    state = start_rollout(project, "canary", "3", overrides={**CANARY, "stages": [50, 100],
                                                             "min_requests": 200})
    answers = drive(server, traffic, finished(project), start=6000)
    final = rollout_status(project, fresh=False).state
    assert final.status == "rolled_back", final.decision
    assert "error rate" in " ".join(final.decision["breached"])
    assert {r.status_code for r in answers} == {200}  # the champion answered every failure
    log = read_predictions(project.workspace.predictions, since=state.started)
    failed = log[log["error"].notna()]
    assert set(failed["arm"]) == {"challenger"} and set(failed["model_version"]) == {"3"}
    assert "chaos: injected failure" in failed["error"].iloc[0]
    metrics = httpx.get(server.url + "/metrics").text
    assert 'flywheel_rollout_candidate_failures_total{arm="challenger",kind="error",' \
           'model_version="3"}' in metrics


def test_ab_split_is_sticky_and_a_restarted_server_resumes_the_same_rollout(
        setup, traffic, tmp_path: Path) -> None:
    project, server = setup
    state = start_rollout(project, "ab", "1", overrides={"mde": 0.001, "max_samples": 100_000})
    records, _ = traffic

    def versions() -> dict[str, str]:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            return {f"u{i}": client.post("/predict", json=records[i], headers={
                "x-flywheel-unit": f"u{i}"}).json()["model_version"] for i in range(60)}

    _wait_for_rollout(server, state.id)
    before = versions()
    assert set(before.values()) == {"1", "2"} and versions() == before
    server.stop()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLYWHEEL_CHAOS", "0.05")
        restarted = start_server(project.spec.root, poll=0.3)
    _wait_for_rollout(restarted, state.id)
    # The module's server is now this one (the fixture stops it at the end).
    server.proc, server.port, server.url = restarted.proc, restarted.port, restarted.url
    ready = httpx.get(restarted.url + "/readyz").json()
    assert ready["rollout"]["id"] == state.id
    assert versions() == before
    assert main(["rollout", "stop", "--config", str(project.spec.root)]) == 0


def test_shadow_mirrors_a_share_users_see_only_the_champion_and_divergence_ends_it(
        setup, traffic) -> None:
    project, server = setup
    state = start_rollout(project, "shadow", "1", overrides={"share": 0.5,
                                                             "min_requests": 10_000})
    _wait_for_rollout(server, state.id)
    answers = drive(server, traffic, finished(project), limit=300, start=9000)
    assert {r.status_code for r in answers} == {200}
    assert {r.json()["model_version"] for r in answers} == {"2"}
    _wait_until(finished(project))
    final = rollout_status(project, fresh=False).state
    assert final.status == "rolled_back"
    assert final.decision["breached"][0].startswith("prediction divergence")
    time.sleep(1.5)  # shadow answers reach the log within one flush interval
    status = rollout_status(project)
    shadow = status.evidence.arm("shadow")
    champion = status.evidence.arm("champion")
    assert shadow.requests >= 50 and status.evidence.shadow.pairs == shadow.requests
    assert 0.3 < shadow.requests / champion.requests < 0.7  # a share of 0.5, not all
    assert status.evidence.shadow.agreement < 0.9


def _wait_until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)


def _wait_for_rollout(server: ServerProcess, rollout_id: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if httpx.get(server.url + "/readyz").json().get("rollout", {}).get("id") == rollout_id:
            return
        time.sleep(0.1)
    raise AssertionError("the server did not pick up the rollout")
