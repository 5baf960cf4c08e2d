"""Predictions as Parquet files in a folder, one row per event id.

Each committed batch becomes one file, written under a temporary name and renamed into place,
so a reader never sees half a file; its events are acknowledged after the rename. A crash
between the rename and the acknowledgement re-delivers those events: the sink remembers the
event ids already in the folder that are still pending for the group (read when it starts) and
writes no second row for them, only acknowledges them.

Columns: ``event_id``, ``version``, ``arm``, ``prediction`` (text), ``probabilities`` (JSON,
null for regression), ``scored_at`` (epoch seconds).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.core.crashpoints import crash_point
from flywheel.stream._redis import as_redis_source
from flywheel.stream.base import DeadLetter, Prediction, StreamSource

__all__ = ["ParquetFolderSink", "read_folder_ids"]

_SCHEMA = pa.schema([("event_id", pa.string()), ("version", pa.string()), ("arm", pa.string()),
                     ("prediction", pa.string()), ("probabilities", pa.string()),
                     ("scored_at", pa.float64())])
_PART = "part-{stamp}-{pid}-{seq:06d}.parquet"


def read_folder_ids(folder: str | Path) -> list[str]:
    """Every event id in the folder's Parquet files, in file order (duplicates kept)."""
    ids: list[str] = []
    for path in sorted(Path(folder).glob("part-*.parquet")):
        ids += pq.read_table(path, columns=["event_id"]).column("event_id").to_pylist()
    return ids


class ParquetFolderSink:
    """Predictions as Parquet files in ``folder``; dead letters and acknowledgements through
    the source (a Redis stream: its dead-letter stream).

    Args:
        folder: Created if missing; leftover temporary files of a killed run are removed.
        pending: Ids the group still has pending (delivered, never acknowledged): those
            already in the folder are not written again.
    """

    def __init__(self, folder: str | Path, *, pending: Iterable[str] = ()) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob(".tmp-*"):
            leftover.unlink(missing_ok=True)
        wanted = set(pending)
        self.written: set[str] = {i for i in read_folder_ids(self.folder) if i in wanted} \
            if wanted else set()
        """Pending ids already written: re-deliveries of these are acknowledged only."""
        self._stamp = time.strftime("%Y%m%dT%H%M%S")
        self._seq = 0

    def commit(self, source: StreamSource, predictions: Sequence[Prediction],
               dead: Sequence[DeadLetter]) -> None:
        fresh = [p for p in predictions if p.event_id not in self.written]
        if fresh:
            self._write(fresh)
        crash_point("stream.written")  # tests: killed after the write, before the ack
        try:
            as_redis_source(source).settle(predictions, dead)
        except Exception:
            # written but not acknowledged: the re-delivery must not write them again
            self.written.update(p.event_id for p in fresh)
            raise
        self.written.difference_update(p.event_id for p in predictions)

    def _write(self, predictions: Sequence[Prediction]) -> None:
        now = time.time()
        table = pa.table({
            "event_id": [p.event_id for p in predictions],
            "version": [p.version for p in predictions],
            "arm": [p.arm for p in predictions],
            "prediction": [str(p.prediction) for p in predictions],
            "probabilities": [None if p.probabilities is None else json.dumps(p.probabilities)
                              for p in predictions],
            "scored_at": [now] * len(predictions),
        }, schema=_SCHEMA)
        self._seq += 1
        name = _PART.format(stamp=self._stamp, pid=os.getpid(), seq=self._seq)
        temporary = self.folder / f".tmp-{name}"
        with temporary.open("wb") as handle:
            pq.write_table(table, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.folder / name)

    def close(self) -> None:
        pass
