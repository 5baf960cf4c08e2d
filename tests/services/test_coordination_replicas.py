"""Two `flywheel serve` replicas in separate folders of one flywheel.yaml, on the mlflow server
on PostgreSQL, coordination in a PostgreSQL cluster of its own, one prediction log between
them: exactly one runs the rollout controller; killed with -9 under load, the other takes over
and decides, its clients seeing no failure; the database going away makes the controller step
down, and one replica leads again when it returns."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pandas as pd
import pytest

from flywheel import Project
from flywheel.demo import ServerProcess
from flywheel.pipelines.rollout import rollout_status, start_rollout
from flywheel.testing import PostgresCluster
from tests.conftest import CHURN
from tests.integration.conftest import start_server
from tests.services.coordination_support import copy_project, servable_version, shared_project

pytestmark = pytest.mark.services

LEASE_SECONDS, RENEW_SECONDS = 4.0, 1.0
ROLLOUT = {"tick_seconds": 0.5, "limits": {"max_metric_drop": None},
           "canary": {"stages": [50, 100], "min_requests": 40, "min_labels": 0}}


@pytest.fixture(scope="module")
def coordination_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    """A cluster of its own, so that stopping it leaves the mlflow server's database up."""
    with PostgresCluster(tmp_path_factory.mktemp("coordination-pg")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, pg_mlflow_server, coordination_db
             ) -> Iterator[dict[str, Any]]:
    log_folder = tmp_path_factory.mktemp("shared-prediction-log")
    one = tmp_path_factory.mktemp("replica-one")
    shared_project(one, tracking_uri=pg_mlflow_server.uri, coordination_uri=coordination_db.url(),
                   model=f"churn-{uuid.uuid4().hex[:6]}", extra={
                       "rollout": ROLLOUT, "monitoring": {"log_location": str(log_folder)},
                       "coordination": {"uri": coordination_db.url(), "lease_seconds":
                                        LEASE_SECONDS, "renew_seconds": RENEW_SECONDS,
                                        "connect_timeout_seconds": 2}})
    project = Project.load(one)
    assert [servable_version(project) for _ in range(2)] == ["1", "2"]
    two = copy_project(one, tmp_path_factory.mktemp("replica-two"))
    servers = {"one": start_server(one, poll=0.3), "two": start_server(two, poll=0.3)}
    yield {"project": project, "servers": servers, "roots": {"one": one, "two": two}}
    for server in servers.values():
        server.stop()


def _ready(server: ServerProcess) -> dict[str, Any]:
    return dict(httpx.get(server.url + "/readyz", timeout=5).json())


def _leaders(servers: dict[str, ServerProcess]) -> list[str]:
    """The replicas that say they lead (one that does not answer does not lead)."""
    leading = []
    for name, server in servers.items():
        try:
            if _ready(server)["controller"]["leader"]:
                leading.append(name)
        except httpx.HTTPError:
            continue
    return leading


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


class Client(threading.Thread):
    """Sends /predict to one replica until stopped, keeping every status code."""

    def __init__(self, server: ServerProcess, records: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.server, self.records = server, records
        self.codes: list[int | str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=10) as client:
            i = 0
            while not self.halt.is_set():
                try:
                    code: int | str = client.post("/predict", json=self.records[i % len(
                        self.records)], headers={"x-flywheel-unit": f"u{i}"}).status_code
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                self.codes.append(code)
                i += 1

    def stop(self) -> list[int | str]:
        self.halt.set()
        self.join(timeout=30)
        return self.codes


@pytest.fixture(scope="module")
def records(replicas: dict[str, Any]) -> list[dict[str, Any]]:
    frame = pd.read_parquet(CHURN).sample(500, random_state=3)
    columns = replicas["project"].schema.feature_columns
    return list(json.loads(frame[columns].to_json(orient="records")))


def test_exactly_one_replica_runs_the_controller_and_the_other_takes_over_on_kill_9(
        replicas: dict[str, Any], records: list[dict[str, Any]]) -> None:
    project, servers = replicas["project"], replicas["servers"]
    _wait(lambda: len(_leaders(servers)) == 1, 20, "one replica leads")
    start_rollout(project, "canary", "2")
    _wait(lambda: all("rollout" in _ready(s) for s in servers.values()), 30,
          "both replicas route the canary")
    leader_name = _leaders(servers)[0]
    survivor_name = "two" if leader_name == "one" else "one"
    leader, survivor = servers[leader_name], servers[survivor_name]
    assert _ready(survivor)["controller"]["holder"].startswith("`")  # names the leader
    at_survivor, at_leader = Client(survivor, records), Client(leader, records)
    at_survivor.start()
    at_leader.start()
    time.sleep(1.0)
    assert leader.proc is not None
    leader.proc.kill()  # kill -9, under load
    killed = time.monotonic()
    leader.proc.wait(timeout=30)
    at_leader.stop()
    took = _wait(lambda: _leaders(servers) == [survivor_name], LEASE_SECONDS + 6,
                 "the survivor takes the controller over")
    assert took <= LEASE_SECONDS + RENEW_SECONDS + 3
    _wait(lambda: not rollout_status(project, fresh=False).state.running, 120,
          "the survivor's controller decides the canary")
    codes = at_survivor.stop()
    state = rollout_status(project, fresh=False).state
    assert state.status == "promoted", state.decision
    assert project.registry().alias_version("champion") == "2"
    decided = [e for e in project.history().entries if e.action == "rollout_promote"]
    assert decided and decided[-1].time > _iso_since(killed)
    assert len(codes) > 100
    assert set(codes) == {200}, {c: codes.count(c) for c in set(codes)}


def test_the_controller_steps_down_while_the_database_is_away_and_one_leads_again(
        replicas: dict[str, Any], records: list[dict[str, Any]], coordination_db) -> None:
    servers = replicas["servers"]
    for name, server in servers.items():  # the replica killed above comes back
        if server.proc is None or server.proc.poll() is not None:
            servers[name] = start_server(replicas["roots"][name], poll=0.3)
    _wait(lambda: len(_leaders(servers)) == 1, 20, "one replica leads")
    client = Client(servers["one"], records)
    client.start()
    coordination_db.stop(mode="immediate")
    try:
        _wait(lambda: _leaders(servers) == [], LEASE_SECONDS + 6,
              "the leader steps down without its database")
        time.sleep(RENEW_SECONDS * 2)
        assert _leaders(servers) == []
    finally:
        coordination_db.restart()
    _wait(lambda: len(_leaders(servers)) == 1, LEASE_SECONDS + 10,
          "one replica leads again once the database is back")
    codes = client.stop()
    assert codes and set(codes) == {200}, {c: codes.count(c) for c in set(codes)}


def _iso_since(monotonic_at: float) -> str:
    ago = time.monotonic() - monotonic_at
    return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ago)).isoformat(
        timespec="milliseconds")
