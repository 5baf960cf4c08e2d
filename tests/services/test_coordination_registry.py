"""Registrations and promotions from several processes in two folders ("hosts") of one
flywheel.yaml, against the mlflow server on PostgreSQL with coordination in PostgreSQL:
versions numbered once each, no alias move or audit entry lost, one history everywhere."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel import Project
from tests.services.coordination_support import copy_project, finish, run_worker, shared_project

pytestmark = pytest.mark.services

REGISTER = """
logged = logged_model()
print(json.dumps([register(logged) for _ in range(25)]))
"""
PROMOTE = """
for version in sys.argv[2].split(","):
    project.promote(version, reason=f"promoted from {sys.argv[1]}")
print("done")
"""


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory, postgres, pg_mlflow_server
          ) -> Iterator[tuple[Path, Path]]:
    url = postgres.create_database("coordination_registry")
    one = tmp_path_factory.mktemp("host-one")
    shared_project(one, tracking_uri=pg_mlflow_server.uri, coordination_uri=url,
                   model=f"churn-{uuid.uuid4().hex[:6]}")
    two = copy_project(one, tmp_path_factory.mktemp("host-two"))
    yield one, two


@pytest.fixture(scope="module")
def registered(hosts: tuple[Path, Path]) -> list[str]:
    one, two = hosts
    workers = [run_worker(root, REGISTER) for root in (one, one, two, two)]
    return [v for worker in workers for v in json.loads(finish(worker).splitlines()[-1])]


def test_four_processes_registering_25_versions_each_number_them_1_to_100_once(
        hosts: tuple[Path, Path], registered: list[str]) -> None:
    assert sorted(registered, key=int) == [str(n) for n in range(1, 101)]
    versions = Project.load(hosts[1]).registry().versions()
    assert sorted(int(v.version) for v in versions) == list(range(1, 101))


def test_registrations_from_both_hosts_are_serialized_in_one_audit_chain(
        hosts: tuple[Path, Path], registered: list[str]) -> None:
    history = Project.load(hosts[0]).history()
    assert history.problems == ()
    assert history.pending == ()
    intents = [r for r in history.records if r.kind == "intent" and r.action == "register"]
    assert len(intents) == 100
    # Under the shared registry lock each registration's lines follow its intent before the
    # next intent begins, whichever host or process wrote them.
    owner = None
    for record in history.records:
        if record.kind == "intent":
            assert owner is None, f"intent #{record.seq} began inside intent #{owner}"
            owner = record.seq
        elif record.intent is not None:
            assert record.intent == owner
            if record.kind == "resolved":
                owner = None
    challenger_moves = [e for e in history.entries if e.alias == "challenger"]
    assert [e.to_version for e in challenger_moves] == [str(n) for n in range(2, 101)]


def test_concurrent_promotions_from_two_hosts_lose_no_alias_move_or_audit_entry(
        hosts: tuple[Path, Path], registered: list[str]) -> None:
    one, two = hosts
    before = len(Project.load(one).history().entries)
    workers = [run_worker(one, PROMOTE, ",".join(str(n) for n in range(10, 50, 4))),
               run_worker(two, PROMOTE, ",".join(str(n) for n in range(12, 52, 4)))]
    for worker in workers:
        finish(worker)
    history = Project.load(two).history()
    assert history.problems == ()
    moves = [e for e in history.entries[before:] if e.alias == "champion"]
    assert len(moves) == 20
    assert sorted(e.reason.split()[-1] for e in moves).count(str(one)) == 10
    # Each move starts where the one before it ended: none was lost or overwritten unseen.
    champion = [e for e in history.entries if e.alias == "champion"]
    for earlier, later in zip(champion, champion[1:], strict=False):
        assert later.from_version == earlier.to_version
    assert Project.load(one).registry().alias_version("champion") == champion[-1].to_version


def test_flywheel_history_in_either_folder_shows_every_hosts_promotions_and_no_local_log(
        hosts: tuple[Path, Path], registered: list[str]) -> None:
    shown = []
    for root in hosts:
        done = subprocess.run([sys.executable, "-m", "flywheel.cli.main", "history", "--json",
                               "--config", str(root)], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        shown.append(json.loads(done.stdout)["entries"])
        assert not (root / ".flywheel" / "audit.jsonl").exists()
        assert not (root / ".flywheel" / "mlflow.db").exists()
        # (init ran embedded, before the spec named the shared back ends: its lock is a file)
        assert not list((root / ".flywheel").glob("locks/registry.*"))
    assert shown[0] == shown[1]
    reasons = {e["reason"] for e in shown[0] if e["action"] == "promote"}
    assert reasons == {f"promoted from {root}" for root in hosts}
