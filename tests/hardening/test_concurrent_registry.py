"""Registrations and promotions from several processes on one embedded project (MLflow on
SQLite, the audit log in .flywheel/audit.jsonl): versions numbered once each, no alias move or
audit entry lost. The PostgreSQL variant is tests/services/test_coordination_registry.py,
whose worker processes this reuses."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from flywheel import Project
from tests.conftest import make_project
from tests.services.coordination_support import finish, run_worker

pytestmark = pytest.mark.hardening

PROCESSES = 4
EACH = 8
REGISTER = f"""
logged = logged_model()
print(json.dumps([register(logged) for _ in range({EACH})]))
"""
PROMOTE = """
for version in sys.argv[2].split(","):
    project.promote(version, reason=f"promoted by worker {sys.argv[3]}")
print("done")
"""


def test_processes_registering_and_promoting_at_once_lose_no_version_move_or_entry(
        tmp_path: Path, figures: dict[str, dict[str, Any]]) -> None:
    root = tmp_path / "p"
    # The store is created first: processes opening a store that does not exist yet race on
    # MLflow's schema migration (alembic: "expected to match one row ... 0 found"), a known
    # defect left open (see the report).
    with make_project(root).registry().parent_run("create the store"):
        pass
    began = time.monotonic()
    workers = [run_worker(root, REGISTER) for _ in range(PROCESSES)]
    registered = [v for w in workers for v in json.loads(finish(w).splitlines()[-1])]
    total = PROCESSES * EACH
    assert sorted(registered, key=int) == [str(n) for n in range(1, total + 1)]
    project = Project.load(root / "flywheel.yaml")
    assert sorted(int(v.version) for v in project.registry().versions()) == \
        list(range(1, total + 1))

    before = len(project.history().entries)
    promoters = [run_worker(root, PROMOTE, ",".join(str(n) for n in range(2 + w, total, 3)),
                            str(w)) for w in range(3)]
    for worker in promoters:
        finish(worker)
    history = project.history()
    assert history.problems == () and history.pending == ()
    moves = [e for e in history.entries[before:] if e.alias == "champion"]
    asked = sum(len(range(2 + w, total, 3)) for w in range(3))
    assert len(moves) == asked
    champion = [e for e in history.entries if e.alias == "champion"]
    for earlier, later in zip(champion, champion[1:], strict=False):
        assert later.from_version == earlier.to_version  # none lost or overwritten unseen
    assert project.registry().alias_version("champion") == champion[-1].to_version
    figures["concurrent_registry"] = {
        "register_processes": PROCESSES, "versions_registered": total,
        "promote_processes": 3, "promotions": asked, "audit_problems": len(history.problems),
        "seconds": round(time.monotonic() - began, 1)}
