"""Alert sinks and the cool-down: files, webhooks with retries that never block, Prometheus."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.core.errors import ConfigError
from flywheel.core.spec import AlertSinkSpec, AlertsSpec
from flywheel.monitoring import (
    Alert,
    AlertDispatcher,
    FileSink,
    PrometheusSink,
    WebhookSink,
    create_sink,
    evaluate_rules,
    parse_rule,
)


def _alert(rule: str = "drift_share > 0.3", value: float = 0.5) -> Alert:
    (outcome,) = evaluate_rules([parse_rule(rule)], {rule.split()[0]: value})
    return Alert.from_outcome(outcome, model="churn", version="3", window="last 100 rows")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Recorder:
    def __init__(self) -> None:
        self.got: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.got.append(alert)


def test_a_repeat_within_the_cooldown_is_held_back_even_across_dispatchers(
        tmp_path: Path) -> None:
    clock, sink, state = _Clock(), _Recorder(), tmp_path / "state.json"
    first = AlertDispatcher([sink], cooldown_seconds=60, state_path=state, clock=clock)
    sent, held = first.dispatch([_alert()])
    assert len(sent) == 1 and held == [] and len(sink.got) == 1
    clock.now += 30
    again = AlertDispatcher([sink], cooldown_seconds=60, state_path=state, clock=clock)
    sent, held = again.dispatch([_alert(), _alert("p99_ms > 50", 80)])
    assert [a.rule for a in sent] == ["p99_ms > 50"] and [a.rule for a in held] == [
        "drift_share > 0.3"]
    clock.now += 31
    sent, held = again.dispatch([_alert()])
    assert len(sent) == 1 and not held and len(sink.got) == 3


def test_a_broken_sink_does_not_stop_the_others() -> None:
    class Broken:
        def send(self, alert: Alert) -> None:
            raise RuntimeError("down")

    sink = _Recorder()
    sent, _ = AlertDispatcher([Broken(), sink], cooldown_seconds=0).dispatch([_alert()])
    assert len(sent) == 1 and len(sink.got) == 1


def test_the_file_sink_appends_one_json_line_per_alert(tmp_path: Path) -> None:
    sink = create_sink(AlertSinkSpec(kind="file", path="alerts/a.jsonl"), tmp_path)
    assert isinstance(sink, FileSink)
    sink.send(_alert())
    sink.send(_alert("p99_ms > 50", 70))
    lines = (tmp_path / "alerts" / "a.jsonl").read_text().splitlines()
    assert [json.loads(line)["metric"] for line in lines] == ["drift_share", "p99_ms"]
    assert "churn v3: drift_share = 0.5" in json.loads(lines[0])["message"]


class _Hook(http.server.BaseHTTPRequestHandler):
    failures = 0
    bodies: list[dict[str, object]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if _Hook.failures > 0:
            _Hook.failures -= 1
            self.send_response(503)
        else:
            _Hook.bodies.append(body)
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.bodies, _Hook.failures = [], 0
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_the_webhook_retries_server_errors_with_backoff_until_delivered(hook: str) -> None:
    _Hook.failures = 2
    sink = WebhookSink(hook, retries=3, backoff=0.05, timeout=2)
    sink.send(_alert())
    sink.close(timeout=5)
    assert sink.delivered == 1 and sink.failed == 0
    assert _Hook.bodies[0]["rule"] == "drift_share > 0.3"


def test_the_webhook_gives_up_after_its_retries_and_says_so(hook: str) -> None:
    _Hook.failures = 10
    sink = WebhookSink(hook, retries=1, backoff=0.01, timeout=2)
    sink.send(_alert())
    sink.close(timeout=5)
    assert (sink.delivered, sink.failed) == (0, 1) and _Hook.bodies == []


def test_sending_to_a_hanging_webhook_returns_at_once() -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts connections, never answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    sink = WebhookSink(url, retries=0, timeout=3)
    started = time.perf_counter()
    for _ in range(20):
        sink.send(_alert())
    assert time.perf_counter() - started < 0.1
    listener.close()


def test_a_webhook_url_variable_that_is_unset_is_a_config_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FLYWHEEL_TEST_HOOK", raising=False)
    with pytest.raises(ConfigError, match="FLYWHEEL_TEST_HOOK is not set"):
        create_sink(AlertSinkSpec(kind="webhook", url_env="FLYWHEEL_TEST_HOOK"), tmp_path)
    with pytest.raises(ValueError, match="needs `url` or `url_env`"):
        AlertSinkSpec(kind="webhook")


def test_prometheus_gauges_hold_every_metric_and_rule_and_reach_the_textfile(
        tmp_path: Path) -> None:
    sink = create_sink(AlertSinkSpec(kind="prometheus", path="metrics.prom"), tmp_path)
    assert isinstance(sink, PrometheusSink)
    rules = [parse_rule("drift_share > 0.3"), parse_rule("p99_ms > 50")]
    metrics = {"drift_share": 0.5, "p99_ms": 12.0}
    dispatcher = AlertDispatcher([sink], cooldown_seconds=0)
    dispatcher.observe(metrics, evaluate_rules(rules, metrics), {"model": "churn",
                                                                 "version": "3"})
    dispatcher.dispatch([_alert()])
    text = (tmp_path / "metrics.prom").read_text()
    assert 'flywheel_monitor_value{metric="drift_share",model="churn",version="3"} 0.5' in text
    assert 'rule="drift_share > 0.3"' in text and 'rule="p99_ms > 50"' in text
    assert "flywheel_monitor_alerts_total" in text


def test_the_default_sinks_are_the_log_and_a_jsonl_file(tmp_path: Path) -> None:
    dispatcher = AlertDispatcher.from_spec(AlertsSpec(), tmp_path)
    dispatcher.dispatch([_alert()])
    assert (tmp_path / ".flywheel" / "monitoring" / "alerts.jsonl").exists()
