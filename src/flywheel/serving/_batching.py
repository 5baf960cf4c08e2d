"""Adaptive batching: requests that arrive together are answered by one model call.

A request never waits for company: the first one schedules a flush with ``call_soon``, which
runs as soon as the event loop has handled what is already ready. Everything that arrived in
the meantime (other connections' requests parsed in the same loop turn) joins that call. Under
no load a batch is one request; under load batches grow by themselves. Limits count rows, not
requests, and every caller gets exactly its own rows back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

Answer = tuple[list[Any], list[list[float]] | None]


class Batcher:
    """Groups concurrent ``submit`` calls per model into single ``answer`` calls.

    Args:
        max_rows: The most rows in one model call; larger groups are split.
        on_batch: Called with the rows of each model call (for the batch-size histogram).
    """

    def __init__(self, *, max_rows: int = 512,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.max_rows = max_rows
        self.on_batch = on_batch
        self._pending: list[tuple[Any, list[dict[str, Any]], asyncio.Future[Answer]]] = []
        self._scheduled = False

    def submit(self, model: Any, records: list[dict[str, Any]]) -> asyncio.Future[Answer]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._pending.append((model, records, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        groups: dict[int, list[tuple[Any, list[dict[str, Any]], asyncio.Future[Answer]]]] = {}
        for item in pending:
            groups.setdefault(id(item[0]), []).append(item)
        for items in groups.values():
            chunk: list[tuple[Any, list[dict[str, Any]], asyncio.Future[Answer]]] = []
            rows = 0
            for item in items:
                if chunk and rows + len(item[1]) > self.max_rows:
                    self._run(chunk)
                    chunk, rows = [], 0
                chunk.append(item)
                rows += len(item[1])
            self._run(chunk)

    def _run(self, chunk: list[tuple[Any, list[dict[str, Any]], asyncio.Future[Answer]]]) -> None:
        model = chunk[0][0]
        if len(chunk) == 1:
            records = chunk[0][1]
        else:
            records = [r for _, rs, _ in chunk for r in rs]
        try:
            predictions, probabilities = model.answer(records)
        except Exception as exc:  # noqa: BLE001 - each caller gets the error, the loop goes on
            for _, _, future in chunk:
                if not future.done():
                    future.set_exception(exc)
            return
        if self.on_batch is not None:
            self.on_batch(len(records))
        start = 0
        for _, rs, future in chunk:
            end = start + len(rs)
            if not future.done():
                future.set_result((predictions[start:end],
                                   None if probabilities is None else probabilities[start:end]))
            start = end
