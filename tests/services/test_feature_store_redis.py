"""The Redis online store against a real redis-server on a loopback port: the online-store
contract, materialization and serving lookups through it, and Redis going down."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import redis

from flywheel.core.errors import FeatureStoreError
from flywheel.core.workspace import Workspace
from flywheel.demo import free_port
from flywheel.featurestore import FeatureStore, RedisOnlineStore
from flywheel.testing import require_binary
from tests.unit.featurestore.conftest import START, sales_frame, view, write_project
from tests.unit.featurestore.online_contract import OnlineStoreContract

pytestmark = pytest.mark.services


class RedisServer:
    """A throwaway redis-server (no persistence) on a free loopback port."""

    def __init__(self, folder: Path) -> None:
        binary = require_binary("redis-server", install="redis-server (apt-get install "
                                                        "redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
        client.close()

    def flush(self) -> None:
        client = redis.Redis.from_url(self.url)
        client.flushall()
        client.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


class TestRedisOnlineStore(OnlineStoreContract):
    @pytest.fixture
    def online(self, redis_server: RedisServer) -> Iterator[RedisOnlineStore]:
        redis_server.flush()
        store = RedisOnlineStore(redis_server.url, "contract")
        yield store
        store.close()


def _project(root: Path, url: str) -> FeatureStore:
    spec = write_project(root, views=[view(ttl=None)],
                         extra={"feature_store": {"views": [view(ttl=None)], "online": url,
                                                  "chunks": 4}})
    return FeatureStore(spec, Workspace(spec.root))


def test_materialize_into_redis_serves_the_latest_values(redis_server, tmp_path) -> None:
    redis_server.flush()
    store = _project(tmp_path, redis_server.url)
    end = (START + pd.Timedelta(days=10)).to_pydatetime()
    [result] = store.materialize(end=end)
    assert result.rows == 40 and result.chunks == 4
    sales = sales_frame()
    last = sales[(sales["store"] == "s05") & (sales["day"] < end)].iloc[-1]
    assert store.get(["s05"]) == {"sales": {"level": float(last["level"]),
                                            "footfall": int(last["footfall"])}}
    pins = {"sales": store.catalog.resolve("sales").pin()}
    joiner = store.joiner(pins, ["store", "basket", "level", "footfall"])
    rows = [{"store": "s05", "basket": 0.1}, {"store": "nope", "basket": 0.2}]
    assert joiner(rows) == []
    assert rows[0]["level"] == float(last["level"]) and rows[1]["level"] is None
    assert joiner.stats() == {"lookups": 2, "misses": {"sales": 1}, "unavailable": 0}


def test_redis_down_fails_materialization_clearly_and_serving_counts_misses(
        tmp_path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    store = _project(tmp_path, dead)
    with pytest.raises(FeatureStoreError, match=r"the Redis online store redis://127\.0\.0\.1:"
                                                r"\d+/0 failed while reading materialization "
                                                r"state \(ConnectionError"):
        store.materialize()
    pins = {"sales": store.catalog.resolve("sales").pin()}
    joiner = store.joiner(pins, ["store", "basket", "level", "footfall"])
    rows = [{"store": "s05", "basket": 0.1}]
    assert joiner(rows) == []
    assert rows == [{"store": "s05", "basket": 0.1, "level": None, "footfall": None}]
    assert joiner.stats() == {"lookups": 1, "misses": {"sales": 1}, "unavailable": 1}


def test_a_redis_that_stops_midway_leaves_serving_answering_with_misses(tmp_path) -> None:
    server = RedisServer(tmp_path)
    try:
        store = _project(tmp_path / "shop", server.url)
        store.materialize(end=(START + pd.Timedelta(days=10)).to_pydatetime())
        pins = {"sales": store.catalog.resolve("sales").pin()}
        joiner = store.joiner(pins, ["store", "basket", "level", "footfall"])
        first = [{"store": "s05", "basket": 0.1}]
        joiner(first)
        assert first[0]["level"] is not None
        server.stop()
        second = [{"store": "s05", "basket": 0.1}]
        assert joiner(second) == []
        assert second[0]["level"] is None
        assert joiner.stats()["misses"] == {"sales": 1}
    finally:
        server.stop()
