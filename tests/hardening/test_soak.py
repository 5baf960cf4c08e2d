"""A bounded soak: 32 concurrent clients on a real `flywheel serve` for several minutes while
the champion moves every 30 s (a promote, then a rollback, in turn).

Zero failed requests, every answer names the version that made it, and the server's resident
memory stays flat: at the end at most 15 % + 32 MB above the sample taken after the warm-up
(a leak of one request's records per request would pass that within seconds). The length is
``$FLYWHEEL_SOAK_SECONDS`` (120 unless set); ``$FLYWHEEL_SOAK_SWAP_SECONDS`` the swap period.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.conftest import CHURN, make_project
from tests.hardening.conftest import env_int
from tests.integration.conftest import start_server

pytestmark = pytest.mark.hardening

CLIENTS = 32
WARMUP_S = 15.0


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its child processes, from /proc."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += next(int(line.split()[1]) * 1024 for line in status.splitlines()
                      if line.startswith("VmRSS:"))
        pending += [int(c) for c in children]
    return total


def test_32_clients_through_a_swap_every_30_s_see_no_failure_and_the_memory_stays_flat(
        tmp_path: Path, figures: dict[str, dict[str, Any]]) -> None:
    seconds = env_int("FLYWHEEL_SOAK_SECONDS", 120)
    swap_every = env_int("FLYWHEEL_SOAK_SWAP_SECONDS", 30)
    project = make_project(tmp_path / "p", frame=pd.read_parquet(CHURN).head(800))
    project.train()  # version 1, the champion
    project.train(seed=5)  # version 2, the challenger
    frame = pd.read_parquet(CHURN).sample(64, random_state=5)
    records = json.loads(frame[project.schema.feature_columns].to_json(orient="records"))
    server = start_server(project.spec.root, poll=0.5)
    assert server.proc is not None
    pid = server.proc.pid
    served: dict[str, int] = {}
    failures: list[str] = []
    swaps: list[str] = []
    memory: dict[str, int] = {}

    async def client(http: httpx.AsyncClient, worker: int, stop: float) -> None:
        i = worker
        while time.monotonic() < stop:
            try:
                response = await http.post("/predict", json=records[i % len(records)])
                body = response.json()
                version = body.get("model_version") if response.status_code == 200 else None
                if version in (None, ""):
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                else:
                    served[version] = served.get(version, 0) + 1
            except (httpx.HTTPError, ValueError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
            i += CLIENTS

    async def mover(stop: float) -> None:
        start = time.monotonic()
        await asyncio.sleep(WARMUP_S)
        memory["after_warmup"] = rss_bytes(pid)
        next_swap = start + swap_every
        while True:
            await asyncio.sleep(max(0.0, next_swap - time.monotonic()))
            if time.monotonic() >= stop - 1:
                break
            if len(swaps) % 2 == 0:
                change = await asyncio.to_thread(project.promote, "2", reason="soak")
            else:
                change = await asyncio.to_thread(project.rollback, reason="soak")
            swaps.append(f"{change.from_version}->{change.to_version}")
            next_swap += swap_every

    async def soak() -> None:
        stop = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
            await asyncio.gather(mover(stop), *(client(http, w, stop) for w in range(CLIENTS)))

    try:
        memory["start"] = rss_bytes(pid)
        began = time.monotonic()
        asyncio.run(soak())
        elapsed = time.monotonic() - began
        memory["end"] = rss_bytes(pid)
    finally:
        server.stop()
    requests = sum(served.values()) + len(failures)
    bound = int(memory["after_warmup"] * 1.15 + 32 * 2**20)
    figures["soak"] = {
        "clients": CLIENTS, "seconds": round(elapsed, 1), "requests": requests,
        "failed": len(failures), "requests_per_s": round(requests / elapsed, 1),
        "swaps": len(swaps), "swap_sequence": swaps, "answers_by_version": served,
        "rss_start_mb": round(memory["start"] / 2**20, 1),
        "rss_after_warmup_mb": round(memory["after_warmup"] / 2**20, 1),
        "rss_end_mb": round(memory["end"] / 2**20, 1), "rss_bound_mb": round(bound / 2**20, 1)}
    assert failures == [], failures[:5]
    assert len(swaps) >= max(1, int(seconds // swap_every) - 1), swaps
    assert set(served) == {"1", "2"}, served  # both versions answered, each named
    assert memory["end"] <= bound, figures["soak"]
