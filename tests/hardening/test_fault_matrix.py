"""The fault matrix: `flywheel train`, promote, rollback, a loop tick (`flywheel loop --once`),
a rollout tick (`flywheel rollout decide`), the prediction log's converter (under a real
`flywheel serve` answering requests) and `flywheel backup` killed with SIGKILL at randomized
points, many times over one project, each kill followed by the invariant checks.

A kill lands either at a named crash point (``FLYWHEEL_CRASH_AT``, core/crashpoints.py) or at a
random moment after the start. A served iteration sends requests to `flywheel serve` and kills
the server at a random moment; its named points kill the converter child process instead
(the server goes on, and is killed at the end all the same). A rollout iteration starts a
blue-green rollout when none is running, then kills the tick. A loop iteration dates the log's
files back first, so that its compaction has settled files to merge.

After each one the next command recovers: `flywheel models`, and the next rollout tick
(`flywheel rollout decide`, what a server does every ``rollout.tick_seconds``) while a rollout
is running. Then: the audit chain has no changed, removed or reordered entry and no pending
intent; every alias names a version that exists, the champion exists and the challenger is not
the champion; no orphaned rollout (a running one has no pending decision, both its versions
exist, and the registry's champion is the one it expects; a finished one's outcome is in the
audit log); every acknowledged prediction is in the log exactly once, apart from those
answered within the documented last flush interval (one second) before the kill; a killed
backup left no file under the name asked for, or a whole one that `flywheel restore` accepts.

``$FLYWHEEL_FAULT_ITERATIONS`` (12 unless set) and ``$FLYWHEEL_FAULT_SEED`` set the length and
the draw; the actions come in shuffled rounds, so 12 iterations cover each at least once.
``$FLYWHEEL_FAULT_ACTIONS`` (comma-separated) keeps only some.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from flywheel import Project
from flywheel.core.crashpoints import CRASH_ENV
from flywheel.core.errors import RolloutError
from flywheel.demo import ServerProcess
from flywheel.predlog import read_predictions, resolve_location
from flywheel.registry import AuditLog
from flywheel.rollout import STATE_TAG, parse_state
from tests.conftest import CHURN, aliases, make_project
from tests.hardening.conftest import env_int

pytestmark = pytest.mark.hardening

FLYWHEEL = str(Path(sys.executable).with_name("flywheel"))
POINTS = {
    "train": ["register.version_created", "register.alias_moved"],
    "promote": ["promote.intent_written", "promote.alias_moved", "promote.champion_recorded"],
    "rollback": ["rollback.alias_moved"],
    "backup": ["backup.archive_half_written", "backup.archive_written"],
    # the loop's tick compacts the log's settled files (``_settle_log``)
    "loop": ["predlog.compact_written", "predlog.parquet_temporary"],
    "rollout": ["rollout.decision_pending", "promote.intent_written", "promote.alias_moved",
                "rollout.alias_moved"],
    # in the converter child of `flywheel serve`
    "serve": ["predlog.spool_converted", "predlog.spool_deleted", "predlog.parquet_temporary"],
}
TIMED = "random moment"
FLUSH_S = 1.0
"""The prediction log's flush interval (`FLYWHEEL_LOG_FLUSH_SECONDS`, 1 by default): a SIGKILL
loses at most what was answered within it (README, "at most the last second")."""
FINAL_ACTIONS = {"promoted": "rollout_promote", "rolled_back": "rollout_rollback",
                 "stopped": "rollout_stop", "completed": "rollout_conclude"}


@dataclasses.dataclass
class Acknowledged:
    """The requests a served iteration's client got an answer to, and how long before the
    kill each answer came."""

    ages: dict[str, float] = dataclasses.field(default_factory=dict)

    def required(self) -> set[str]:
        return {rid for rid, age in self.ages.items() if age > FLUSH_S}


def _config(project: Project) -> str:
    return str(project.spec.root / "flywheel.yaml")


def _args(project: Project, action: str, rng: random.Random, backup: Path) -> list[str]:
    if action == "train":
        return ["train", "--seed", str(rng.randrange(1000))]
    if action == "promote":
        versions = [v.version for v in project.registry().versions()]
        champion = aliases(project).get("champion")
        others = [v for v in versions if v != champion] or versions
        return ["promote", rng.choice(others), "--force", "--reason", "fault matrix"]
    if action == "rollback":
        return ["rollback", "--reason", "fault matrix"]
    if action == "backup":
        return ["backup", "-o", str(backup)]
    if action == "rollout":
        return ["rollout", "decide", "--json"]
    return ["loop", "--once"]


def _run(project: Project, args: list[str], *, crash_at: str | None = None,
         kill_after: float | None = None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    proc = subprocess.Popen([FLYWHEEL, *args, "--config", _config(project)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


def _log(project: Project) -> str:
    return resolve_location(project.spec.monitoring.log_location, project.spec.root)


def _settle_log(project: Project) -> None:
    """Date the log's Parquet files three minutes back, as if they had settled: the loop's
    compaction merges only files over two minutes old, and the matrix is faster than that.
    (Windowed readers may then skip them; the invariants read the whole log.)"""
    then = time.time() - 180
    for path in Path(_log(project)).glob("kind=*/date=*/hour=*/*.parquet"):
        os.utime(path, (then, then))


def _rollout_state(project: Project) -> Any:
    _, tags = project.registry().aliases_and_tags()
    text = tags.get(STATE_TAG)
    return parse_state(text) if text else None


def _start_rollout(project: Project, rng: random.Random) -> str | None:
    """Start a blue-green rollout (no bake, so two ticks finish it) unless one is running;
    what went wrong, if anything did."""
    state = _rollout_state(project)
    if state is not None and state.running:
        return None
    moved = aliases(project)
    others = [v.version for v in project.registry().versions()
              if v.version != moved.get("champion")]
    if not others:
        return None
    version = moved.get("challenger") or rng.choice(others)
    code, err = _run(project, ["rollout", "blue-green", version, "--bake-requests", "0",
                               "--force", "--reason", "fault matrix"])
    return None if code == 0 else f"starting a blue-green rollout exited {code}: {err[-400:]}"


def _converters(pid: int) -> list[int]:
    """The prediction-log converter processes among ``pid``'s children."""
    try:
        children = [int(c) for c in
                    Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    found = []
    for child in children:
        try:
            if b"flywheel.predlog" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _serve(project: Project, rng: random.Random, point: str, acked: Acknowledged,
           records: list[dict[str, Any]]) -> tuple[bool, str]:
    """Answer requests on `flywheel serve`, then SIGKILL it at a random moment (2-6 s into
    the traffic); a named point kills its converter meanwhile. (converter killed, problem)."""
    crash = {} if point == TIMED else {CRASH_ENV: point}
    log_file = project.workspace.root / "serve-fault.log"
    server = ServerProcess(project.spec.root, poll=0.5, log_file=log_file,
                           env={"FLYWHEEL_LOG_FLUSH_SECONDS": str(FLUSH_S), **crash})
    try:
        server.start(timeout=180)
    except RuntimeError as exc:
        return False, f"flywheel serve did not start: {exc}: {log_file.read_text()[-600:]}"
    assert server.proc is not None
    converter = _converters(server.proc.pid)
    answered: list[tuple[str, float]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            i = 0
            while not stop.is_set():
                try:
                    response = http.post("/predict", json=records[i % len(records)])
                except httpx.HTTPError:
                    return  # the server is gone
                if response.status_code == 200:
                    answered.append((response.json()["request_id"], time.monotonic()))
                i += 1

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    time.sleep(rng.uniform(2.0, 6.0))
    converter_killed = bool(converter) and not any(_alive(c) for c in converter)
    killed_at = time.monotonic()
    server.proc.kill()
    server.proc.wait(timeout=30)
    stop.set()
    thread.join(timeout=30)
    for rid, when in answered:
        acked.ages[rid] = killed_at - when
    deadline = time.monotonic() + 120  # the converter drains the spool once its server is gone
    while any(_alive(c) for c in converter) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [c for c in converter if _alive(c)]
    return converter_killed, f"the converter {left} still runs 120 s after the kill" if left \
        else ""


def _recover(project: Project) -> list[str]:
    """The next commands: `flywheel models`, and the next rollout tick while one is running."""
    found = []
    listed = subprocess.run([FLYWHEEL, "models", "--config", _config(project)],
                            capture_output=True, text=True, timeout=300)
    if listed.returncode != 0:
        found.append(f"flywheel models: {listed.stderr[-400:]}")
    state = _rollout_state(project)
    if state is not None and state.running:
        code, err = _run(project, ["rollout", "decide", "--json"])
        if code != 0:
            found.append(f"the next rollout tick exited {code}: {err[-400:]}")
    return found


def rollout_violations(project: Project) -> list[str]:
    """An orphaned rollout: damaged, still pending after the next tick, naming a version that
    is gone, expecting another champion than the registry's, or ended unaudited."""
    try:
        state = _rollout_state(project)
    except RolloutError as exc:
        return [f"the rollout state is damaged: {exc}"]
    if state is None:
        return []
    if not state.running:
        wanted = FINAL_ACTIONS[state.status]
        entries = AuditLog(project.workspace.audit_log).read().entries
        if not any(e.action == wanted and (e.evidence or {}).get("rollout") == state.id
                   for e in entries):
            return [f"rollout {state.id} is {state.status}, and the audit log has no "
                    f"{wanted} entry for it"]
        return []
    found = []
    if state.pending is not None:
        found.append(f"rollout {state.id} still has a pending {state.pending} after the "
                     "next tick")
    versions = {v.version for v in project.registry().versions()}
    found += [f"rollout {state.id} names version {v} ({role}), which does not exist"
              for role, v in (("champion", state.champion), ("challenger", state.challenger))
              if v not in versions]
    expected = state.challenger if state.phase == "switched" else state.champion
    champion = aliases(project).get("champion")
    if champion != expected:
        found.append(f"rollout {state.id} ({state.kind}, phase {state.phase or '-'}) runs "
                     f"with champion {expected}, the registry's is {champion}")
    return found


def prediction_violations(project: Project, acked: Acknowledged) -> list[str]:
    """Acknowledged predictions missing from the log (answered over a flush interval before
    the kill), or read more than once."""
    if not acked.ages:
        return []
    logged = collections.Counter(
        read_predictions(_log(project), with_labels=False, columns=["request_id"])["request_id"])
    missing = sorted(acked.required() - set(logged))
    twice = sorted(rid for rid in acked.ages if logged[rid] > 1)
    found = []
    if missing:
        found.append(f"{len(missing)} of {len(acked.required())} acknowledged predictions are "
                     f"not in the log, such as {missing[:3]}")
    if twice:
        found.append(f"{len(twice)} acknowledged predictions are read more than once, such as "
                     f"{twice[:3]}")
    return found


def violations(project: Project, backup: Path, killed: bool, restore_to: Path,
               acked: Acknowledged) -> list[str]:
    """Every broken invariant, described (empty when all hold)."""
    found: list[str] = []
    history = AuditLog(project.workspace.audit_log).read()
    found += [f"audit line {p.line}: {p.kind}: {p.message}" for p in history.problems
              if p.kind in ("checksum", "chain")]
    if history.pending:
        found.append(f"{len(history.pending)} intents still pending after recovery")
    versions = {v.version for v in project.registry().versions()}
    moved = aliases(project)
    found += [f"alias {a} names version {v}, which does not exist"
              for a, v in moved.items() if v not in versions]
    if "champion" not in moved:
        found.append("no champion")
    if moved.get("challenger") is not None and moved.get("challenger") == moved.get("champion"):
        found.append("the challenger is the champion")
    found += rollout_violations(project)
    found += prediction_violations(project, acked)
    if killed and backup.exists():
        restored = subprocess.run([FLYWHEEL, "restore", str(backup), str(restore_to)],
                                  capture_output=True, text=True, timeout=300)
        if restored.returncode != 0:
            found.append(f"a killed backup left {backup.name}, refused: {restored.stderr[-300:]}")
    return found


def _schedule(rng: random.Random, iterations: int) -> list[str]:
    """The actions in shuffled rounds (each once per round), cut to ``iterations``."""
    chosen = os.environ.get("FLYWHEEL_FAULT_ACTIONS", "")
    actions = [a.strip() for a in chosen.split(",") if a.strip()] or sorted(POINTS)
    unknown = set(actions) - set(POINTS)
    if unknown:
        raise ValueError(f"FLYWHEEL_FAULT_ACTIONS names {sorted(unknown)}; known: "
                         f"{', '.join(sorted(POINTS))}")
    order: list[str] = []
    while len(order) < iterations:
        order += rng.sample(actions, len(actions))
    return order[:iterations]


def test_kill_9_at_random_points_breaks_no_registry_audit_rollout_or_acknowledged_prediction(
        tmp_path: Path, figures: dict[str, dict[str, Any]]) -> None:
    iterations = env_int("FLYWHEEL_FAULT_ITERATIONS", 12)
    rng = random.Random(env_int("FLYWHEEL_FAULT_SEED", 20))
    project = make_project(tmp_path / "p", frame=pd.read_parquet(CHURN).head(800))
    project.train()  # version 1, the champion
    project.train(seed=5)  # version 2, the challenger
    frame = pd.read_parquet(CHURN).sample(64, random_state=7)
    records = json.loads(frame[project.schema.feature_columns].to_json(orient="records"))
    acked = Acknowledged()
    runs: list[dict[str, Any]] = []
    broken: list[str] = []
    began = time.monotonic()
    for i, action in enumerate(_schedule(rng, iterations)):
        point = rng.choice([*POINTS[action], TIMED])
        backup = tmp_path / f"backup-{i}.tar"
        delay, converter_killed = None, False
        if action == "serve":
            converter_killed, problem = _serve(project, rng, point, acked, records)
            killed, code = True, -signal.SIGKILL  # the server itself is always killed
            if problem:
                broken.append(f"#{i} serve at {point}: {problem}")
        else:
            if action == "rollout":
                problem = _start_rollout(project, rng)
                if problem:
                    broken.append(f"#{i} {problem}")
            if action == "loop":
                _settle_log(project)
            delay = round(rng.uniform(0.5, 8.0), 2) if point == TIMED else None
            code, err = _run(project, _args(project, action, rng, backup),
                             crash_at=None if point == TIMED else point, kill_after=delay)
            killed = code == -signal.SIGKILL
            if not killed and (code not in (0, 1, 2, 3) or "Traceback" in err):
                broken.append(f"#{i} {action} exited {code}: {err[-400:]}")
        broken += [f"#{i} after {action}/{point}: {p}" for p in _recover(project)]
        found = violations(project, backup, killed, tmp_path / f"restored-{i}", acked)
        broken += [f"#{i} {action} at {point}{f' ({delay} s)' if delay else ''}: {v}"
                   for v in found]
        runs.append({"action": action, "point": point, "delay_s": delay, "exit": code,
                     "killed": killed and (point == TIMED or action != "serve"
                                           or converter_killed)})
    points = sorted({f"{r['action']}:{r['point']}" for r in runs})
    state = _rollout_state(project)
    figures["fault_matrix"] = {
        "iterations": iterations, "killed": sum(r["killed"] for r in runs),
        "kill_points": points, "kill_point_count": len(points),
        "killed_at": sorted({f"{r['action']}:{r['point']}" for r in runs if r["killed"]}),
        "invariant_violations": len(broken), "seconds": round(time.monotonic() - began, 1),
        "versions_at_end": len(project.registry().versions()),
        "acknowledged_predictions": len(acked.ages),
        "acknowledged_required": len(acked.required()),
        "acknowledged_within_last_flush": len(acked.ages) - len(acked.required()),
        "rollout_at_end": None if state is None else state.summary(),
        "compact_files_at_end": len(list(Path(_log(project)).glob("kind=*/*/*/compact-*")))}
    assert broken == [], broken
