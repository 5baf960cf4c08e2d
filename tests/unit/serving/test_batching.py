"""The batcher: concurrent requests share model calls, and each gets exactly its own rows."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from flywheel.serving._batching import Batcher
from tests.unit.serving.conftest import ChurnModel


class _Counting:
    """The served model, counting its calls and the rows of each."""

    def __init__(self, served: Any, *, fails: bool = False) -> None:
        self.served, self.fails = served, fails
        self.calls: list[int] = []

    def answer(self, records: list[dict[str, Any]]) -> Any:
        self.calls.append(len(records))
        if self.fails:
            raise ValueError("this version cannot score")
        return self.served.answer(records)


def test_concurrent_distinct_requests_share_one_call_and_each_gets_exactly_its_rows(
        churn: ChurnModel) -> None:
    model = _Counting(churn.served)
    batches: list[int] = []
    batcher = Batcher(on_batch=batches.append)
    # Requests of 1, 2 and 3 rows, none alike: a shifted answer would show.
    sizes = [1 + i % 3 for i in range(20)]
    starts = np.cumsum([0, *sizes])[:-1] % len(churn.records)
    requests = [[churn.records[(s + k) % len(churn.records)] for k in range(n)]
                for s, n in zip(starts, sizes, strict=True)]

    async def burst() -> list[Any]:
        return await asyncio.gather(*(batcher.submit(model, rows) for rows in requests))

    answers = asyncio.run(burst())
    assert model.calls == [sum(sizes)] and batches == [sum(sizes)]
    for (s, n), (labels, probabilities) in zip(zip(starts, sizes, strict=True), answers,
                                                strict=True):
        rows = [(s + k) % len(churn.records) for k in range(n)]
        assert len(labels) == n
        np.testing.assert_allclose(probabilities, churn.expected[rows], atol=1e-12)
        assert labels == [["no", "yes"][int(p.argmax())] for p in churn.expected[rows]]


def test_a_batch_never_holds_more_than_max_rows_and_a_large_request_goes_alone(
        churn: ChurnModel) -> None:
    model = _Counting(churn.served)
    batcher = Batcher(max_rows=5)
    requests = [churn.records[0:3], churn.records[3:6], churn.records[6:16], churn.records[16:17]]

    async def burst() -> list[Any]:
        return await asyncio.gather(*(batcher.submit(model, rows) for rows in requests))

    answers = asyncio.run(burst())
    assert model.calls == [3, 3, 10, 1]
    for rows, (_, probabilities) in zip([range(0, 3), range(3, 6), range(6, 16), range(16, 17)],
                                        answers, strict=True):
        np.testing.assert_allclose(probabilities, churn.expected[list(rows)], atol=1e-12)


def test_requests_for_two_versions_are_answered_by_their_own_version(churn: ChurnModel) -> None:
    first, second = _Counting(churn.served), _Counting(churn.served)
    batcher = Batcher()

    async def burst() -> list[Any]:
        return await asyncio.gather(batcher.submit(first, churn.records[:2]),
                                    batcher.submit(second, churn.records[2:3]),
                                    batcher.submit(first, churn.records[3:4]))

    asyncio.run(burst())
    assert (first.calls, second.calls) == ([3], [1])


def test_a_failing_model_call_fails_every_request_in_it_and_the_next_call_still_runs(
        churn: ChurnModel) -> None:
    broken, healthy = _Counting(churn.served, fails=True), _Counting(churn.served)
    batcher = Batcher()

    async def burst() -> list[Any]:
        return await asyncio.gather(batcher.submit(broken, churn.records[:1]),
                                    batcher.submit(broken, churn.records[1:2]),
                                    batcher.submit(healthy, churn.records[2:3]),
                                    return_exceptions=True)

    first, second, third = asyncio.run(burst())
    assert isinstance(first, ValueError) and isinstance(second, ValueError)
    np.testing.assert_allclose(third[1], churn.expected[2:3], atol=1e-12)

    async def later() -> Any:
        return await batcher.submit(healthy, churn.records[4:5])

    np.testing.assert_allclose(asyncio.run(later())[1], churn.expected[4:5], atol=1e-12)


def test_a_lone_request_is_answered_without_waiting_for_company(churn: ChurnModel) -> None:
    model = _Counting(churn.served)
    batcher = Batcher()

    async def one() -> Any:
        return await asyncio.wait_for(batcher.submit(model, churn.records[:1]), timeout=1.0)

    labels, _ = asyncio.run(one())
    assert model.calls == [1] and len(labels) == 1
