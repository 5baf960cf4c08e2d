"""The file and the PostgreSQL back ends of coordination behave the same: the audit log's
stores (lines, chain, intents, concurrent appenders, tampering) and the coordinators (locks,
leader leases, state documents), each test run against both."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from flywheel.coordination import PostgresAuditStore, PostgresCoordinator, SharedStore
from flywheel.core.coordination import Coordinator, FileCoordinator
from flywheel.core.errors import WorkspaceBusyError
from flywheel.registry import AuditLog

pytestmark = pytest.mark.services

BACKENDS = ["file", "postgresql"]
# A process that opens the same coordinator as the test, from its description (no MLflow).
_OPEN = """
import json, sys
from pathlib import Path
from flywheel.coordination import PostgresCoordinator, SharedStore
from flywheel.core.coordination import FileCoordinator
where = json.loads(sys.argv[1])
if where["kind"] == "file":
    coordinator = FileCoordinator(Path(where["root"]))
else:
    store = SharedStore(where["url"], pool_size=2, connect_timeout=5)
    coordinator = PostgresCoordinator(store, where["scope"])
"""


class Backend:
    """One back end, as the tests and their child processes open it."""

    def __init__(self, kind: str, tmp_path: Path, url: str | None) -> None:
        self.kind = kind
        self.scope = f"model-{uuid.uuid4().hex[:8]}"
        self.where: dict[str, Any] = {"kind": kind, "path": str(tmp_path / "audit.jsonl"),
                                      "root": str(tmp_path / ".flywheel"), "url": url,
                                      "scope": self.scope}
        self.url = url

    def log(self) -> AuditLog:
        if self.kind == "file":
            return AuditLog(self.where["path"])
        return AuditLog(store=PostgresAuditStore(self._store(), self.scope))

    def coordinator(self, *, lease_seconds: float = 15.0) -> Coordinator:
        """A new coordinator, as another process would open it (its own connections)."""
        if self.kind == "file":
            return FileCoordinator(Path(self.where["root"]))
        return PostgresCoordinator(self._store(), self.scope, lease_seconds=lease_seconds)

    def tamper(self, seq: int, old: str, new: str) -> None:
        """Change the stored line of entry ``seq`` behind the log's back."""
        if self.kind == "file":
            path = Path(self.where["path"])
            lines = path.read_text().splitlines(keepends=True)
            lines[seq - 1] = lines[seq - 1].replace(old, new)
            path.write_text("".join(lines))
            return
        engine = sqlalchemy.create_engine(str(self.url))
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(
                "UPDATE flywheel_audit SET line = replace(line, :o, :n) "
                "WHERE scope = :s AND seq = :q"), {"o": old, "n": new, "s": self.scope, "q": seq})
        engine.dispose()

    def spawn(self, body: str, *args: str) -> subprocess.Popen[str]:
        code = _OPEN + textwrap.dedent(body)
        return subprocess.Popen([sys.executable, "-c", code, json.dumps(self.where), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def _store(self) -> SharedStore:
        return SharedStore(str(self.url), pool_size=3, connect_timeout=5)


@pytest.fixture(scope="module")
def coordination_url(postgres) -> str:
    return postgres.create_database("coordination_stores")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    url = request.getfixturevalue("coordination_url") if request.param == "postgresql" else None
    yield Backend(request.param, tmp_path, url)


def _append(log: AuditLog, to: str, **extra: Any) -> None:
    log.append(action="promote", model="m", alias="champion", from_version=None,
               to_version=to, reason=f"to {to}", **extra)


# The audit log ---------------------------------------------------------------------------

def test_audit_entries_read_back_in_order_with_an_intact_chain(backend: Backend) -> None:
    log = backend.log()
    assert log.read().entries == ()
    for version in ("1", "2", "3"):
        _append(log, version, evidence={"gain": 0.1})
    history = backend.log().read()
    assert [e.seq for e in history.entries] == [1, 2, 3]
    assert [e.to_version for e in history.entries] == ["1", "2", "3"]
    assert history.entries[0].evidence == {"gain": 0.1}
    assert history.problems == ()


def test_an_intent_stays_pending_until_its_end_is_written(backend: Backend) -> None:
    log = backend.log()
    intent = log.begin(action="promote", model="m", reason="promote 2",
                       moves=[{"alias": "champion", "from": "1", "to": "2"}])
    _append(log, "2", intent=intent.seq)
    assert [p.seq for p in backend.log().read().pending] == [intent.seq]
    log.finish(intent, "done")
    history = backend.log().read()
    assert history.pending == ()
    assert [e.intent for e in history.entries] == [intent.seq]
    assert [r.kind for r in history.records] == ["intent", "change", "resolved"]


def test_four_writers_appending_at_once_leave_one_unbroken_chain(backend: Backend) -> None:
    # Each writer opens the log on its own (its own file lock, its own connections), as
    # separate processes would; tests/services/test_coordination_registry.py runs processes.
    def write(n: int) -> None:
        log = backend.log()
        for i in range(25):
            _append(log, f"{n}-{i}")

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    history = backend.log().read()
    assert [e.seq for e in history.entries] == list(range(1, 101))
    assert sorted(e.to_version or "" for e in history.entries) == sorted(
        f"{n}-{i}" for n in range(4) for i in range(25))
    assert history.problems == ()


def test_a_changed_entry_is_reported_and_skipped_and_the_rest_read(backend: Backend) -> None:
    log = backend.log()
    for version in ("1", "2", "3"):
        _append(log, version)
    backend.tamper(2, '"to 2"', '"to 9"')
    history = backend.log().read()
    assert [e.seq for e in history.entries] == [1, 3]
    assert [p.kind for p in history.problems] == ["checksum", "chain"]
    _append(log, "4")  # the next entry chains on from the last good one
    assert [e.seq for e in backend.log().read().entries] == [1, 3, 4]


# The coordinators ------------------------------------------------------------------------

def test_a_held_lock_makes_another_holder_wait_and_then_names_the_holder(
        backend: Backend) -> None:
    first, second = backend.coordinator(), backend.coordinator()
    with first.lock("registry", timeout=5, command="flywheel promote 2"):
        started = time.monotonic()
        busy = r"`flywheel promote 2` \(pid \d+ on .*holds the 'registry' lock"
        with pytest.raises(WorkspaceBusyError, match=busy), second.lock("registry", timeout=0.5):
            pass
        assert time.monotonic() - started >= 0.5
        with second.lock("train", timeout=0.5):  # another name is another lock
            pass
    with second.lock("registry", timeout=0.5):
        pass


def test_a_lock_whose_holder_was_killed_is_free_and_the_dead_holder_is_reported(
        backend: Backend) -> None:
    holder = backend.spawn("""
        import os, signal
        with coordinator.lock("registry", timeout=5, command="flywheel train (register)"):
            print("held", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.wait(timeout=30)
    coordinator = backend.coordinator()
    with coordinator.lock("registry", timeout=10):
        assert "flywheel train (register)" in coordinator.stale_holders["registry"]


def test_one_process_leads_at_a_time_and_leadership_passes_on_step_down(
        backend: Backend) -> None:
    one, two = backend.coordinator().lease("controller"), backend.coordinator().lease("controller")
    assert one.acquire() and one.held
    assert not two.acquire() and not two.held
    assert one.acquire()  # renewing
    assert "pid" in (two.holder() or "")
    one.step_down()
    assert not one.held
    assert two.acquire() and two.held
    assert not one.acquire()


def test_state_documents_read_back_and_are_replaced_whole(backend: Backend) -> None:
    coordinator = backend.coordinator()
    assert coordinator.read_state("loop/state.json") is None
    coordinator.write_state("loop/state.json", '{"phase": "retraining"}')
    coordinator.write_state("loop/state.json", '{"phase": "idle"}')
    assert backend.coordinator().read_state("loop/state.json") == '{"phase": "idle"}'


# PostgreSQL only: what has no file counterpart ------------------------------------------

def _lease(backend: Backend, seconds: float) -> Callable[[], Any]:
    return lambda: backend.coordinator(lease_seconds=seconds).lease("controller")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_lease_whose_holder_stops_renewing_passes_on_after_the_lease_time(
        backend: Backend) -> None:
    make = _lease(backend, 1.5)
    one, two = make(), make()
    assert one.acquire()
    assert not two.acquire()
    time.sleep(1.7)
    assert not one.held  # the holder knows its lease lapsed without a renewal
    assert two.acquire()
    assert not one.acquire()
