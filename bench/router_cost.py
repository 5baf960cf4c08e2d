"""Per-request cost of rollout routing, against the serving budget (p99 < 1 ms end to end).

Times the routing work a request does before its model call, for each situation it can meet,
with the headers uvicorn hands over for a typical client: without a rollout the server checks
one attribute (``router.plan is None``); with one, ``RolloutResponder`` calls ``Router.route``
and ``Router.mirror`` and, when mirroring a share, draws a random number; a mirrored request
then costs one ``ShadowRunner.submit`` (a queue put). Each figure is the median per call over
20 rounds of --calls / 20 calls, in nanoseconds; the last column puts it beside a 0.35 ms p99
request (the bare-handler anchor of issue 5).

    python bench/router_cost.py [--calls 200000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import time
import types
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from flywheel.core._rollout_spec import RolloutSpec
from flywheel.rollout import new_state, policy_from_spec
from flywheel.serving import Router, ShadowRunner
from flywheel.serving._metrics import ServingMetrics

HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"python-httpx/0.28.1"),
           (b"accept", b"*/*"), (b"accept-encoding", b"gzip, deflate"),
           (b"connection", b"keep-alive"), (b"content-type", b"application/json"),
           (b"content-length", b"412")]
RECORD = {"state": "KS", "account_length": 128, "area_code": "area_code_415",
          "international_plan": "no", "total_day_minutes": 265.1, "customer": "C00042"}
ANCHOR_NS = 350_000.0


def state(kind: str, **overrides: object) -> object:
    policy = policy_from_spec(kind, RolloutSpec(), task="binary", overrides=overrides)
    return new_state(model="m", policy=policy, champion="1", challenger="2", started_by="bench",
                     reason="", now=dt.datetime.now(dt.UTC))


def median_ns(fn: Callable[[], object], calls: int) -> float:
    """Median of 20 rounds of ``calls / 20`` calls each, per call."""
    per_round = max(1, calls // 20)
    samples = []
    for _ in range(20):
        started = time.perf_counter_ns()
        for _ in range(per_round):
            fn()
        samples.append((time.perf_counter_ns() - started) / per_round)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    loaded = {v: types.SimpleNamespace(version=v, log_layout=(("x", True),),
                                       answer=lambda rows: (["no"] * len(rows), None))
              for v in ("1", "2", "3")}
    records = [RECORD]
    keyed = [*HEADERS, (b"x-flywheel-unit", b"user-8c1f2e")]
    cases: list[tuple[str, object, list[tuple[bytes, bytes]]]] = [
        ("no rollout (the usual path)", None, HEADERS),
        ("canary 5 %, unit header", state("canary"), keyed),
        ("canary 5 %, no unit key (random)", state("canary"), HEADERS),
        ("A/B 50 %, unit from a record field", state("ab", unit_field="customer"), HEADERS),
        ("bandit, 3 arms, unit header", state("bandit", arms=["1", "2", "3"]), keyed),
        ("shadow 10 % (route, mirror, share draw)", state("shadow", share=0.1), HEADERS),
    ]
    table = Table(title="Rollout routing cost per request")
    for heading in ("situation", "median ns", "share of a 0.35 ms request"):
        table.add_column(heading, justify="left" if heading == "situation" else "right")
    router = Router()
    draw = random.random
    for name, st, headers in cases:
        router.update(st, loaded)  # type: ignore[arg-type]
        route, mirror = router.route, router.mirror

        # Timed within this iteration only, so the loop variables it reads are the current ones.
        def per_request() -> object:
            if router.plan is None:  # what the server checks before anything else
                return None
            route(headers, records)  # noqa: B023
            shadow = mirror()  # noqa: B023
            return shadow is not None and draw() < shadow[1]

        ns = median_ns(per_request, args.calls)
        table.add_row(name, f"{ns:,.0f}", f"{ns / ANCHOR_NS:.2%}")
    runner = ShadowRunner(None, ServingMetrics(), max_pending=10**9).start()
    served = loaded["2"]
    submit = runner.submit
    ns = median_ns(lambda: submit(served, records, "rid", 0.25),  # type: ignore[arg-type]
                   args.calls)
    runner.stop()
    table.add_row("shadow enqueue (ShadowRunner.submit)", f"{ns:,.0f}", f"{ns / ANCHOR_NS:.2%}")
    Console().print(table)


if __name__ == "__main__":
    main()
