"""`flywheel stream` against a real redis-server on a loopback port: predictions keyed by event
id, poison events to the dead-letter stream, hot swap, metrics, and kill -9 mid-stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from flywheel.core.crashpoints import CRASH_ENV
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines.stream import StreamOptions, build_scorer
from flywheel.serving import read_predictions
from flywheel.stream import StreamScorer, read_folder_ids
from flywheel.testing import RedisServer
from tests.conftest import CHURN, make_project, register_lightgbm

pytestmark = pytest.mark.services

FLYWHEEL = str(Path(sys.executable).parent / "flywheel")
TRAIN_ROWS = 1500


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as started:
        yield started


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProjectContext, Any, pd.DataFrame]:
    """A churn project whose champion (version 1) is a LightGBM pipeline."""
    root = tmp_path_factory.mktemp("stream") / "p"
    make_project(root, frame=pd.read_parquet(CHURN).head(2000))
    context = ProjectContext.load(root)
    _, model, holdout = register_lightgbm(context, train_rows=TRAIN_ROWS)
    return context, model, holdout


@pytest.fixture
def client(server: RedisServer) -> Iterator[Any]:
    connection = redis.Redis.from_url(server.url)
    connection.flushall()
    yield connection
    connection.close()


def _append(client: Any, stream: str, records: list[Any]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for record in records:
        pipe.xadd(stream, {"record": record if isinstance(record, str) else json.dumps(record)})
    return [i.decode() for i in pipe.execute()]


def _outputs(client: Any, stream: str) -> list[tuple[str, dict[str, Any]]]:
    return [(f[b"event_id"].decode(), json.loads(f[b"prediction"]))
            for _, f in client.xrange(stream)]


def _scorer(project: ProjectContext, server: RedisServer, **options: Any) -> StreamScorer:
    scorer = build_scorer(project, StreamOptions(source=f"{server.url}/events", group="g",
                                                 **options))
    scorer.store.reconcile()
    return scorer


def test_every_event_gets_one_prediction_keyed_by_its_event_id_and_logged(
        project: tuple[ProjectContext, Any, pd.DataFrame], server: RedisServer,
        client: Any) -> None:
    context, model, holdout = project
    records = holdout.head(300).to_dict(orient="records")
    ids = _append(client, "events", records)
    scorer = _scorer(context, server, batch=64)
    assert scorer.run(idle_exit_s=0.5) == 300
    scorer.log.flush()  # type: ignore[union-attr]
    out = _outputs(client, "events:predictions")
    assert [i for i, _ in out] == ids
    expected = model.predict_proba(holdout.head(300))
    got = np.array([p["probabilities"] for _, p in out])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert {p["version"] for _, p in out} == {"1"}
    assert [p["prediction"] for _, p in out] == [("no", "yes")[k] for k in expected.argmax(1)]
    assert client.xpending("events", "g")["pending"] == 0
    logged = read_predictions(context.spec.root / ".flywheel" / "predictions")
    assert set(ids) <= set(logged["request_id"])


def test_poison_events_go_to_the_dead_letter_stream_with_their_reason(
        project: tuple[ProjectContext, Any, pd.DataFrame], server: RedisServer,
        client: Any) -> None:
    context, _, holdout = project
    good = holdout.head(3).to_dict(orient="records")
    text = {**good[0], "total_day_minutes": "lots"}
    missing = {k: v for k, v in good[0].items() if k != "state"}
    ids = _append(client, "events", [good[0], "{not json", text, "[1, 2]", missing, good[1]])
    client.xadd("events", {"payload": "no record field"})
    scorer = _scorer(context, server, log_predictions=False)
    assert scorer.run(idle_exit_s=0.5) == 7
    assert [i for i, _ in _outputs(client, "events:predictions")] == [ids[0], ids[5]]
    dead = {f[b"event_id"].decode(): f[b"reason"].decode()
            for _, f in client.xrange("events:dead")}
    assert len(dead) == 5
    assert dead[ids[1]].startswith("unparseable: the record is not JSON")
    assert dead[ids[2]] == "failed the input checks: total_day_minutes: expected a number, " \
        "got text"
    assert "not an object of features" in dead[ids[3]]
    assert dead[ids[4]] == "failed the input checks: state: missing field"
    assert any("no record or data field" in r for r in dead.values())
    raw = [json.loads(f[b"fields"]) for _, f in client.xrange("events:dead")]
    assert raw[0] == {"record": "{not json"}  # the event as it came, to replay once fixed
    assert client.xpending("events", "g")["pending"] == 0


def test_a_promotion_applies_to_the_next_batch(
        project: tuple[ProjectContext, Any, pd.DataFrame], server: RedisServer,
        client: Any, tmp_path: Path) -> None:
    context, _, holdout = project
    records = holdout.head(20).to_dict(orient="records")
    scorer = _scorer(context, server, output=str(tmp_path / "out"), log_predictions=False)
    first = _append(client, "events", records[:10])
    scorer.run(idle_exit_s=0.3)
    version, model, _ = register_lightgbm(context, train_rows=TRAIN_ROWS, seed=3, trees=10)
    context.registry().set_alias("champion", version)
    assert scorer.store.reconcile()
    second = _append(client, "events", records[10:])
    scorer.run(idle_exit_s=0.3)
    table = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "out").glob("*.parquet"))])
    by_id = dict(zip(table["event_id"], table["version"], strict=True))
    assert [by_id[i] for i in first] == ["1"] * 10
    assert [by_id[i] for i in second] == [version] * 10
    probabilities = [json.loads(p) for p in table.set_index("event_id").loc[second,
                                                                              "probabilities"]]
    np.testing.assert_allclose(probabilities, model.predict_proba(holdout.head(20).tail(10)),
                               atol=1e-6)
    context.registry().set_alias("champion", "1")


def test_a_running_canary_routes_events_to_both_versions(
        project: tuple[ProjectContext, Any, pd.DataFrame], server: RedisServer,
        client: Any) -> None:
    from flywheel.pipelines.rollout import start_rollout, stop_rollout

    context, _, holdout = project
    version, _, _ = register_lightgbm(context, train_rows=TRAIN_ROWS, seed=5, trees=10)
    context.registry().set_alias("challenger", version)
    start_rollout(context, "canary", version, overrides={"stages": [50.0]})
    try:
        scorer = _scorer(context, server, log_predictions=False)
        assert scorer.router.plan is not None
        ids = _append(client, "events", holdout.head(200).to_dict(orient="records"))
        assert scorer.run(idle_exit_s=0.5) == 200
    finally:
        stop_rollout(context, reason="test over")
    out = dict(_outputs(client, "events:predictions"))
    assert sorted(out) == sorted(ids)
    versions = Counter(p["version"] for p in out.values())
    assert set(versions) == {"1", version} and min(versions.values()) > 50, versions
    assert {p["arm"] for p in out.values() if p["version"] == version} != {"champion"}


def test_lag_throughput_and_errors_are_prometheus_metrics(
        project: tuple[ProjectContext, Any, pd.DataFrame], server: RedisServer,
        client: Any) -> None:
    context, _, holdout = project
    _append(client, "events", [*holdout.head(50).to_dict(orient="records"), "oops"])
    scorer = _scorer(context, server, log_predictions=False)
    port = _free_port()
    scorer.metrics.serve(port)
    scorer.run(idle_exit_s=1.5)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'flywheel_stream_events_total{outcome="scored",stream="events"} 50.0' in text
    assert 'flywheel_stream_events_total{outcome="dead_letter",stream="events"} 1.0' in text
    assert 'flywheel_stream_errors_total{kind="parse",stream="events"} 1.0' in text
    assert 'flywheel_stream_lag{stream="events"} 0.0' in text
    assert 'flywheel_stream_latency_seconds_count{stream="events"} 50.0' in text


def test_a_broker_that_stops_answering_is_retried_and_nothing_is_acknowledged(
        project: tuple[ProjectContext, Any, pd.DataFrame], tmp_path: Path) -> None:
    context, _, holdout = project
    with RedisServer(tmp_path / "redis") as own:
        connection = redis.Redis.from_url(own.url)
        _append(connection, "events", holdout.head(20).to_dict(orient="records"))
        scorer = _scorer(context, own, log_predictions=False)
        assert scorer.run(idle_exit_s=0.3) == 20
        own.stop()
        runner = threading.Thread(target=scorer.run)
        runner.start()
        time.sleep(3.0)
        assert runner.is_alive()  # still retrying, not crashed
        scorer.stop()
        runner.join(10)
    assert not runner.is_alive()
    text = scorer.metrics.registry.get_sample_value(
        "flywheel_stream_errors_total", {"stream": "events", "kind": "broker"})
    assert text is not None and text >= 2


def test_a_server_that_lost_the_group_gets_it_again_and_later_events_are_scored(
        project: tuple[ProjectContext, Any, pd.DataFrame], server: RedisServer,
        client: Any) -> None:
    context, _, holdout = project
    records = holdout.head(40).to_dict(orient="records")
    _append(client, "events", records[:20])
    scorer = _scorer(context, server, log_predictions=False)
    assert scorer.run(idle_exit_s=0.3) == 20
    client.flushall()  # what a restart without persistence leaves: no stream, no group
    later = _append(client, "events", records[20:])
    assert scorer.run(idle_exit_s=0.5) == 20
    assert [i for i, _ in _outputs(client, "events:predictions")] == later
    assert client.xpending("events", "g")["pending"] == 0


def test_a_bad_source_url_or_an_unreachable_server_exits_2(tmp_path: Path) -> None:
    make_project(tmp_path / "p", frame=pd.read_parquet(CHURN).head(200))
    config = str(tmp_path / "p" / "flywheel.yaml")
    bad = subprocess.run([FLYWHEEL, "stream", "--source", "kafka://x/events", "--group", "g",
                          "-c", config], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "is not a Redis stream URL" in bad.stderr
    down = subprocess.run([FLYWHEEL, "stream", "--source", f"redis://127.0.0.1:{_free_port()}"
                           "/events", "--group", "g", "-c", config],
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 2 and "does not answer" in down.stderr


@pytest.mark.parametrize("output", ["redis", "folder"])
def test_kill_9_mid_stream_and_a_restart_leave_exactly_one_prediction_per_event(
        project: tuple[ProjectContext, Any, pd.DataFrame], server: RedisServer,
        client: Any, tmp_path: Path, output: str) -> None:
    context, _, holdout = project
    records = holdout.to_dict(orient="records")
    total = 6000
    target = f"{server.url}/events:out" if output == "redis" else str(tmp_path / "out")
    command = [FLYWHEEL, "stream", "--source", f"{server.url}/events", "--group", "g",
               "--output", target, "--batch", "100", "--claim-idle-ms", "500", "-c",
               str(context.spec.root / "flywheel.yaml")]
    ids: list[str] = []
    producing = threading.Thread(target=lambda: ids.extend(_produce(server, records, total)))
    first = _start(command, tmp_path / "first.log", env={})
    producing.start()
    _wait(lambda: _count(client, output, target) >= 1000, 120, "the first 1000 predictions")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert client.xpending("events", "g")["pending"] > 0 or _count(client, output, target) \
        < total  # killed mid-stream: work was left
    second = _start(command, tmp_path / "second.log", env={})
    try:
        producing.join(120)
        _wait(lambda: _count(client, output, target) >= total, 180, f"{total} predictions")
        time.sleep(1.0)  # anything written twice would show up by now
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    written = _ids(client, output, target)
    twice = [i for i, n in Counter(written).items() if n > 1]
    assert not twice, f"{len(twice)} event ids have more than one prediction"
    assert sorted(written) == sorted(ids) and len(ids) == total
    assert client.xpending("events", "g")["pending"] == 0


def test_a_crash_between_the_folder_write_and_the_ack_writes_no_second_row(
        project: tuple[ProjectContext, Any, pd.DataFrame], server: RedisServer,
        client: Any, tmp_path: Path) -> None:
    context, _, holdout = project
    ids = _append(client, "events", holdout.head(40).to_dict(orient="records"))
    folder = tmp_path / "out"
    command = [FLYWHEEL, "stream", "--source", f"{server.url}/events", "--group", "g",
               "--output", str(folder), "--claim-idle-ms", "0", "-c",
               str(context.spec.root / "flywheel.yaml")]
    crashed = _start(command, tmp_path / "crash.log", env={CRASH_ENV: "stream.written"})
    assert crashed.wait(120) == -signal.SIGKILL
    assert sorted(read_folder_ids(folder)) == sorted(ids)  # written, never acknowledged
    assert client.xpending("events", "g")["pending"] == 40
    again = _start(command, tmp_path / "again.log", env={})
    try:
        _wait(lambda: client.xpending("events", "g")["pending"] == 0, 120, "the re-delivery")
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(30) == 0
    assert sorted(read_folder_ids(folder)) == sorted(ids)


def _produce(server: RedisServer, records: list[dict[str, Any]], total: int) -> list[str]:
    """Append ``total`` events at about 2,000 a second."""
    connection = redis.Redis.from_url(server.url)
    ids: list[str] = []
    for start in range(0, total, 200):
        rows = [records[i % len(records)] for i in range(start, min(total, start + 200))]
        ids += _append(connection, "events", rows)
        time.sleep(0.1)
    return ids


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, **env})


def _ids(client: Any, output: str, target: str) -> list[str]:
    if output == "redis":
        return [f[b"event_id"].decode() for _, f in client.xrange(target.rsplit("/", 1)[1])]
    return read_folder_ids(target)


def _count(client: Any, output: str, target: str) -> int:
    if output == "redis":
        return int(client.xlen(target.rsplit("/", 1)[1]))
    return len(read_folder_ids(target)) if Path(target).exists() else 0


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _free_port() -> int:
    from flywheel.demo import free_port

    return free_port()
