from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from flywheel.registry._audit import AuditLog


def _append(log: AuditLog, n: int = 1, **extra: object) -> None:
    for i in range(n):
        log.append(**{"action": "promote", "model": "m", "alias": "champion",
                      "from_version": str(i), "to_version": str(i + 1), "reason": f"step {i}",
                      **extra})  # type: ignore[arg-type]


def test_entries_read_back_in_order_with_sequence_user_and_evidence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_USER", "ana")
    log = AuditLog(tmp_path / "audit.jsonl")
    first = log.append(action="register", model="m", alias="champion", from_version=None,
                       to_version="1", reason="first version", evidence={"auc": 0.91, "n": 3})
    _append(log, 2)
    history = log.read()
    assert history.problems == ()
    assert [e.seq for e in history.entries] == [1, 2, 3]
    assert history.entries[0] == first
    assert first.user == "ana" and first.from_version is None and first.evidence["auc"] == 0.91
    assert first.time.endswith("+00:00")


def test_a_missing_log_is_an_empty_history(tmp_path: Path) -> None:
    history = AuditLog(tmp_path / "none.jsonl").read()
    assert history.entries == () and history.problems == ()


def test_a_torn_last_line_is_reported_and_earlier_entries_stay_readable(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    _append(log, 3)
    whole = path.read_bytes()
    path.write_bytes(whole + whole.splitlines(keepends=True)[-1][:40])  # a crash mid-write
    history = log.read()
    assert len(history.entries) == 3
    assert [p.kind for p in history.problems] == ["torn"]
    assert "interrupted" in str(history.problems[0]) and "line 4" in str(history.problems[0])


def test_an_append_after_a_torn_line_starts_a_line_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    _append(log, 2)
    with path.open("ab") as fh:
        fh.write(b'{"entry": {"seq": 3, "ti')
    entry = log.append(action="rollback", model="m", alias="champion", from_version="2",
                       to_version="1", reason="after the crash")
    history = log.read()
    assert entry.seq == 3  # numbering continues from the last good entry
    assert [e.reason for e in history.entries] == ["step 0", "step 1", "after the crash"]
    assert [(p.line, p.kind) for p in history.problems] == [(3, "corrupt")]


def test_a_changed_line_fails_its_checksum_and_a_removed_one_breaks_the_chain(
        tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    _append(log, 4)
    lines = path.read_text().splitlines(keepends=True)
    edited = json.loads(lines[1])
    edited["entry"]["reason"] = "someone rewrote history"
    lines[1] = json.dumps(edited) + "\n"
    del lines[2]
    path.write_text("".join(lines))
    history = log.read()
    assert [e.reason for e in history.entries] == ["step 0", "step 3"]
    assert [(p.line, p.kind) for p in history.problems] == [(2, "checksum"), (3, "chain")]


def _writer(path: str, n: int) -> None:
    _append(AuditLog(path), n)


def test_concurrent_writers_never_interleave_or_lose_entries(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("fork")  # workers share nothing but the file
    workers = [context.Process(target=_writer, args=(str(path), 15)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert all(w.exitcode == 0 for w in workers)
    history = AuditLog(path).read()
    assert history.problems == ()
    assert [e.seq for e in history.entries] == list(range(1, 61))


def test_evidence_with_nan_and_numpy_values_is_stored_as_plain_json(tmp_path: Path) -> None:
    import numpy as np

    log = AuditLog(tmp_path / "a.jsonl")
    log.append(action="promote", model="m", alias="champion", from_version="1", to_version="2",
               reason="NaN in the reason stays", evidence={"gain": np.float64(0.01),
                                                           "low": float("nan"), "rows": (1, 2)})
    entry = log.read().entries[0]
    assert entry.evidence == {"gain": 0.01, "low": None, "rows": [1, 2]}
    assert entry.reason == "NaN in the reason stays"


def test_an_intent_without_its_end_is_pending_and_its_changes_are_entries(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    moves = [{"alias": "champion", "from": "1", "to": "2"},
             {"alias": "challenger", "from": "2", "to": None}]
    intent = log.begin(action="promote", model="m", moves=moves, reason="better",
                       evidence={"gates": "all passed"})
    change = log.append(action="promote", model="m", alias="champion", from_version="1",
                        to_version="2", reason="better", intent=intent.seq)
    history = log.read()
    assert history.entries == (change,)  # the intent is not a change
    assert history.pending == (intent,) and intent.kind == "intent"
    assert intent.moves == moves and history.completing(intent.seq) == (change,)
    log.finish(intent, "done")
    assert log.read().pending == () and log.read().recoveries == ()
    assert [r.kind for r in log.read().records] == ["intent", "change", "resolved"]


def test_entries_written_before_intents_existed_read_back_as_changes(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    _append(log, 2)
    raw = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert all(set(r["entry"]) == {"seq", "time", "user", "action", "model", "alias", "from",
                                   "to", "reason", "evidence", "prev"} for r in raw)
    history = log.read()
    assert history.problems == () and len(history.entries) == 2 and history.pending == ()
