"""Reading the prediction log: a window of predictions with their labels, and the feedback.

Reading is a scan of memory-mapped Arrow files, about a million rows in a fraction of a second,
plus the spool files not converted yet (the last second or so; more if the converter lags).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flywheel.predlog._rows import DEFAULT_ARM, PRED_META
from flywheel.predlog._spool import SPOOL_GLOB, spool_batch, spool_kind

log = logging.getLogger("flywheel.predlog")


def read_predictions(folder: str | Path, *, since: dt.datetime | None = None,
                     until: dt.datetime | None = None, last: int | None = None,
                     with_labels: bool = True) -> pd.DataFrame:
    """Predictions in a time window (or the ``last`` N), labels joined from feedback.

    Segments written with different input columns are combined; missing ones are null.
    """
    folder = Path(folder)
    tables = _read_log(folder, "pred-*.arrows", lambda kind: kind != "feedback")
    if not tables:
        return pd.DataFrame(columns=[f.name for f in PRED_META] + ["label"])
    table = pa.concat_tables(tables, promote_options="default")
    ts = table.column("ts")
    mask = None
    if since is not None:
        mask = pc.greater_equal(ts, pa.scalar(since, ts.type))
    if until is not None:
        before = pc.less(ts, pa.scalar(until, ts.type))
        mask = before if mask is None else pc.and_(mask, before)
    if mask is not None:
        table = table.filter(mask)
    if last is not None:
        table = table.sort_by("ts").slice(max(0, table.num_rows - last))
    frame = table.to_pandas()
    if "arm" not in frame:  # segments written before rollouts
        frame["arm"] = DEFAULT_ARM
    frame["arm"] = frame["arm"].fillna(DEFAULT_ARM)
    if "error" not in frame:
        frame["error"] = None
    if "event_ts" in frame:
        frame["event_ts"] = frame["event_ts"].fillna(frame["ts"])
    else:
        frame["event_ts"] = frame["ts"]
    if with_labels:
        labels = read_feedback(folder)
        frame = frame.merge(labels, on="request_id", how="left")
    return pd.DataFrame(frame)


def read_feedback(folder: str | Path) -> pd.DataFrame:
    """The latest label per request id."""
    tables = _read_log(Path(folder), "fb-*.arrows", lambda kind: kind == "feedback")
    if not tables:
        return pd.DataFrame({"request_id": pd.Series(dtype=str), "label": pd.Series(dtype=str),
                             "label_ts": pd.Series(dtype="datetime64[us, UTC]")})
    frame = pa.concat_tables(tables).to_pandas().sort_values("ts", kind="stable")
    frame = frame.drop_duplicates("request_id", keep="last")
    return pd.DataFrame(frame.rename(columns={"ts": "label_ts"}))


def _read_log(folder: Path, pattern: str, wanted: object) -> list[pa.Table]:
    """The Arrow streams matching ``pattern`` and the spool files of the ``wanted`` kinds that
    no stream holds yet.

    Spool files are read before the streams: one converted and deleted in between is then in
    the streams, so nothing falls through the gap.
    """
    spooled: dict[str, bytes] = {}
    for path in sorted(folder.glob(SPOOL_GLOB)):
        if wanted(spool_kind(path.name)):  # type: ignore[operator]
            with contextlib.suppress(FileNotFoundError):
                spooled[path.name] = path.read_bytes()
    tables, converted = _read_streams(sorted(folder.glob(pattern)))
    for name, data in spooled.items():
        if name in converted:
            continue
        try:
            _, _, batch = spool_batch(data)
        except ValueError as exc:
            log.warning("skipping prediction log spool file %s: %s", name, exc)
            continue
        if batch.num_rows:
            tables.append(pa.Table.from_batches([batch]))
    return tables


def _read_streams(paths: Iterable[Path]) -> tuple[list[pa.Table], set[str]]:
    """Tables of the stream files and the spool files their batches came from. A batch whose
    spool file was already read (converted twice) is skipped."""
    tables = []
    seen: set[str] = set()
    for path in paths:
        try:
            with pa.memory_map(str(path)) as source:
                reader = pa.ipc.open_stream(source)
                batches = []
                with contextlib.suppress(pa.ArrowInvalid, OSError, StopIteration):
                    while True:  # a batch torn by a crash ends the file early
                        batch, metadata = reader.read_next_batch_with_custom_metadata()
                        spool = metadata.get(b"spool") if metadata else None
                        if spool is not None:
                            name = spool.decode()
                            if name in seen:
                                continue
                            seen.add(name)
                        batches.append(batch)
                if batches:
                    tables.append(pa.Table.from_batches(batches, schema=reader.schema))
        except (pa.ArrowInvalid, OSError) as exc:
            log.warning("skipping unreadable prediction log segment %s: %s", path.name, exc)
    return tables, seen
