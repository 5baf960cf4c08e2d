"""Reading the prediction log: a window of predictions with their labels, and the feedback.

A window (``since``/``until``, or the ``last`` N rows) lists the date folders, then the hour
folders of the dates it spans, and reads only the hour partitions it needs: its cost follows
the window, not the log. ``last`` walks the hours newest first until it holds N rows. The
spool files not converted yet (the last second or so; more if the converter lags) are read too,
those rows an hour's files hold already left out, so a window always includes the last flush
and never a row twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from flywheel.predlog._dataset import (
    FEEDBACK_KIND,
    PREDICTIONS,
    Partition,
    footer_rows,
    list_partitions,
    partition_files,
    partition_path,
    read_file,
    read_partition,
    split_by_hour,
)
from flywheel.predlog._location import SPOOL_DIR, check_location, is_local, open_location
from flywheel.predlog._migrate import migrate_flat_log
from flywheel.predlog._rows import DEFAULT_ARM, PRED_META
from flywheel.predlog._spool import SPOOL_GLOB, spool_batch, spool_kind, spool_stem

log = logging.getLogger("flywheel.predlog")

_LABEL_WINDOW_KEYS = ("request_id", "ts")
CLOCK_SKEW = 10.0
"""Seconds a file's write time (the store's clock) may run behind the rows' times (the
replica's clock); ``last`` reads files this much older than strictly needed."""


def read_predictions(location: str | Path, *, since: dt.datetime | None = None,
                     until: dt.datetime | None = None, last: int | None = None,
                     with_labels: bool = True, columns: Sequence[str] | None = None,
                     spool: str | Path | None = None) -> pd.DataFrame:
    """Predictions logged in ``[since, until)`` (or the ``last`` N of them), oldest first,
    with the latest label of each request joined from the feedback that arrived since the
    window's first row.

    Args:
        location: The log: a folder or an object-store URI.
        columns: Read only these columns (``request_id`` and ``ts`` always come).
        spool: The writer's spool folder when it is not ``<location>/_spool``.

    Segments written with different input columns are combined; missing ones are null.
    """
    wanted = None if columns is None else list(dict.fromkeys([*_LABEL_WINDOW_KEYS, *columns]))
    table = _read_kind(location, PREDICTIONS, since, until, last, wanted, spool)
    if table is None:
        return pd.DataFrame(columns=[f.name for f in PRED_META] + ["label"])
    table = table.sort_by("ts")
    if last is not None and table.num_rows > last:
        table = table.slice(table.num_rows - last)
    frame = table.to_pandas()
    if columns is None or "arm" in columns:
        if "arm" not in frame:  # segments written before rollouts
            frame["arm"] = DEFAULT_ARM
        frame["arm"] = frame["arm"].fillna(DEFAULT_ARM)
    if (columns is None or "error" in columns) and "error" not in frame:
        frame["error"] = None
    if columns is None or "event_ts" in columns:
        if "event_ts" in frame:
            frame["event_ts"] = frame["event_ts"].fillna(frame["ts"])
        else:
            frame["event_ts"] = frame["ts"]
    if with_labels:
        first = frame["ts"].min() if len(frame) else None
        start = since if first is None or pd.isna(first) else first.to_pydatetime()
        labels = read_feedback(location, since=start, spool=spool) if len(frame) else \
            _empty_feedback()
        frame = frame.merge(labels, on="request_id", how="left")
    return pd.DataFrame(frame)


def read_feedback(location: str | Path, *, since: dt.datetime | None = None,
                  until: dt.datetime | None = None,
                  spool: str | Path | None = None) -> pd.DataFrame:
    """The latest label per request id among the labels received in ``[since, until)``."""
    table = _read_kind(location, FEEDBACK_KIND, since, until, None, None, spool)
    if table is None:
        return _empty_feedback()
    frame = table.to_pandas().sort_values("ts", kind="stable")
    frame = frame.drop_duplicates("request_id", keep="last")
    return pd.DataFrame(frame.rename(columns={"ts": "label_ts"}))


def count_rows(location: str | Path, *, kind: str = "predictions",
               since: dt.datetime | None = None, spool: str | Path | None = None,
               at_most: int | None = None) -> int:
    """How many rows of ``kind`` (predictions or feedback) were logged since ``since``.

    Whole hours are counted from their files' footers; only the hour ``since`` falls in is
    read (its ``ts`` column), and the spool. Costs a footer per file, not a read of the rows.

    Args:
        at_most: Stop once at least this many are counted (hours newest first; the count
            returned is then at least this): enough for a caller comparing with a threshold.
    """
    if kind not in (PREDICTIONS, FEEDBACK_KIND):
        raise ValueError(f"kind must be {PREDICTIONS!r} or {FEEDBACK_KIND!r}, not {kind!r}")
    text = str(location)
    filesystem, base, spooled = _open_log(text, kind, spool)
    keep = _window_mask(since, None)
    covered: dict[dt.datetime, set[str]] = {}
    total = 0
    for partition in reversed(list_partitions(filesystem, base, kind, since=since)):
        if at_most is not None and total >= at_most:
            break  # older hours not needed (the newest, which the spool's rows are in, is)
        if since is not None and partition.hour < since:
            found, covered[partition.hour] = read_partition(filesystem, partition.path, ["ts"])
            total += sum(keep(t).num_rows for t in found)
            continue
        files = partition_files(filesystem, partition.path)
        covered[partition.hour] = files.covered
        total += sum(footer_rows(filesystem, path) for path in files.read)
    spooled_rows = _unconverted(filesystem, base, kind, spooled, covered, keep, ["ts"])
    return total + sum(int(t.num_rows) for t in spooled_rows)


def _open_log(text: str, kind: str, spool: str | Path | None
              ) -> tuple[pafs.FileSystem, str, dict[str, bytes]]:
    """The log's file system and base path, and its spool files of ``kind``, listed first (a
    spool file converted meanwhile is then in a partition's listing); a flat log of an
    earlier version is moved into partitions first."""
    if is_local(text):
        migrate_flat_log(text)
    filesystem, base = open_location(text)
    folder = Path(spool) if spool is not None else (
        Path(text) / SPOOL_DIR if is_local(text) else None)
    spooled = _spooled(folder, (lambda k: k == "feedback") if kind == FEEDBACK_KIND
                       else (lambda k: k != "feedback"))
    return filesystem, base, spooled


def _empty_feedback() -> pd.DataFrame:
    return pd.DataFrame({"request_id": pd.Series(dtype=str), "label": pd.Series(dtype=str),
                         "label_ts": pd.Series(dtype="datetime64[us, UTC]")})


def _read_kind(location: str | Path, kind: str, since: dt.datetime | None,
               until: dt.datetime | None, last: int | None, columns: list[str] | None,
               spool: str | Path | None) -> pa.Table | None:
    """The rows of ``kind`` in the window as one table (None: no rows)."""
    text = str(location)
    filesystem, base, spooled = _open_log(text, kind, spool)
    keep = _window_mask(since, until)
    tables: list[pa.Table] = []
    covered: dict[dt.datetime, set[str]] = {}
    partitions = list_partitions(filesystem, base, kind, since=since, until=until)
    if not partitions and not is_local(text):
        check_location(text)  # an empty window, or a bucket that does not exist?
    if last is None:
        # A file written before `since` (less the clock skew) holds no row of the window.
        after = None if since is None else since.timestamp() - CLOCK_SKEW
        for partition in partitions:
            found, covered[partition.hour] = read_partition(filesystem, partition.path, columns,
                                                            written_after=after)
            tables.extend(keep(t) for t in found)
    else:
        _read_newest(filesystem, partitions, last, keep, columns, tables, covered)
    tables.extend(_unconverted(filesystem, base, kind, spooled, covered, keep, columns))
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return None
    try:
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # one column logged with two types
        return pa.concat_tables(tables, promote_options="permissive")


def _read_newest(filesystem: pafs.FileSystem, partitions: list[Partition], last: int,
                 keep: Callable[[pa.Table], pa.Table], columns: list[str] | None,
                 tables: list[pa.Table], covered: dict[dt.datetime, set[str]]) -> None:
    """Read hours newest first, and each hour's files newest first, until the rows held
    include the ``last`` newest: a file written before the N-th newest row held was logged
    (less ``CLOCK_SKEW``) holds only older rows, and so does every older hour."""
    for partition in reversed(partitions):
        first = len(tables)
        for _ in range(_RELISTS):
            try:
                done = _read_hour_newest(filesystem, partition, last, keep, columns, tables,
                                         covered)
                break
            except FileNotFoundError:
                # A segment written again or a compaction finished meanwhile: list again.
                del tables[first:]
        else:
            found, covered[partition.hour] = read_partition(filesystem, partition.path,
                                                            columns)
            tables.extend(keep(t) for t in found)
            done = int(sum(t.num_rows for t in tables)) >= last
        if done:
            return


_RELISTS = 5
"""Listings of one hour a ``last`` read tries while its files change under it."""


def _read_hour_newest(filesystem: pafs.FileSystem, partition: Partition, last: int,
                      keep: Callable[[pa.Table], pa.Table], columns: list[str] | None,
                      tables: list[pa.Table], covered: dict[dt.datetime, set[str]]) -> bool:
    """Add one hour's files to ``tables``, newest first, while they may hold one of the
    ``last`` newest rows; whether ``tables`` now hold them all.

    Raises:
        FileNotFoundError: If a listed file is gone (the listing is stale).
    """
    files = partition_files(filesystem, partition.path)
    covered[partition.hour] = files.covered
    held = int(sum(t.num_rows for t in tables))
    threshold: float | None = None
    for path in sorted(files.read, key=lambda p: files.modified[p], reverse=True):
        if threshold is not None and files.modified[path] < threshold:
            return True
        try:
            table = keep(read_file(filesystem, path, columns))
        except FileNotFoundError:
            raise
        except (pa.ArrowInvalid, OSError) as exc:
            log.warning("skipping unreadable prediction log file %s: %s", path, exc)
            continue
        tables.append(table)
        held += table.num_rows
        if held >= last:
            threshold = _nth_newest(tables, last) - CLOCK_SKEW
    return held >= last


def _nth_newest(tables: list[pa.Table], n: int) -> float:
    """The Unix time of the ``n``-th newest row in ``tables``."""
    micros = np.concatenate([t.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False)
                             for t in tables if t.num_rows])
    return float(np.partition(micros, len(micros) - n)[len(micros) - n]) / 1e6


def _window_mask(since: dt.datetime | None,
                 until: dt.datetime | None) -> Callable[[pa.Table], pa.Table]:
    def keep(table: pa.Table) -> pa.Table:
        if since is None and until is None:
            return table
        ts = table.column("ts")
        mask = None
        if since is not None:
            mask = pc.greater_equal(ts, pa.scalar(since, ts.type))
        if until is not None:
            before = pc.less(ts, pa.scalar(until, ts.type))
            mask = before if mask is None else pc.and_(mask, before)
        return table.filter(mask)
    return keep


def _spooled(folder: Path | None, wanted: Callable[[str], bool]) -> dict[str, bytes]:
    if folder is None:
        return {}
    found: dict[str, bytes] = {}
    for path in sorted(folder.glob(SPOOL_GLOB)):
        if wanted(spool_kind(path.name)):
            with contextlib.suppress(FileNotFoundError):
                found[path.name] = path.read_bytes()
    return found


def _unconverted(filesystem: pafs.FileSystem, base: str, kind: str, spooled: dict[str, bytes],
                 covered: dict[dt.datetime, set[str]], keep: Callable[[pa.Table], pa.Table],
                 columns: list[str] | None) -> list[pa.Table]:
    """Rows of spool files that no partition file holds yet."""
    tables = []
    for name, data in spooled.items():
        try:
            _, _, batch = spool_batch(data)
        except ValueError as exc:
            log.warning("skipping prediction log spool file %s: %s", name, exc)
            continue
        for hour, rows in split_by_hour(batch):
            if hour not in covered:
                covered[hour] = partition_files(
                    filesystem, partition_path(base, kind, hour)).covered
            if spool_stem(name) in covered[hour]:
                continue
            rows = keep(rows)
            if columns is not None:
                rows = rows.select([c for c in columns if c in rows.column_names])
            tables.append(rows)
    return tables
