"""The reference half of the contribution shift, computed once per version and kept in
``.flywheel/monitoring/versions/<model>/<version>.json``.

A version's reference rows and model never change, and explaining them exactly (2,000 rows of
tree contributions) took as long as the rest of a monitoring run. The file names the run, the
row count and a digest of the rows it explained: a file for another run or other rows (a
version number reused after the registry was reset), or a damaged one, is ignored and
recomputed. It is a cache: deleting it costs one computation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from flywheel.core.workspace import atomic_write_text
from flywheel.monitoring import Explain

__all__ = ["memo_path", "remembered"]

log = logging.getLogger("flywheel.monitoring")


def memo_path(workspace: Path, model: str, version: str) -> Path:
    """Where a version's reference importance is kept."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    return workspace / "monitoring" / "versions" / safe / f"{version}.json"


def remembered(explain: Explain, path: Path, run_id: str) -> Explain:
    """``explain`` for the reference rows, read from ``path`` when it holds these rows' answer
    and written there when it did not; also kept in memory for a long-lived process."""
    kept: dict[str, Mapping[str, float] | None] = {}

    def explain_reference(frame: pd.DataFrame) -> Mapping[str, float] | None:
        key = _digest(frame)
        if key in kept:
            return kept[key]
        found: Mapping[str, float] | None = _read(path, run_id, key, len(frame))
        if found is None:
            found = explain(frame)
            if found is not None:
                _write(path, run_id, key, len(frame), found)
        kept[key] = found
        return found

    return explain_reference


def _digest(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    columns = "\0".join(map(str, frame.columns)).encode()
    return hashlib.sha256(columns + hashed.tobytes()).hexdigest()


def _read(path: Path, run_id: str, key: str, rows: int) -> dict[str, float] | None:
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        if (entry.get("run_id"), entry.get("rows_digest"), entry.get("rows")) != \
                (run_id, key, rows):
            return None
        importance = entry["importance"]
        return {str(c): float(v) for c, v in importance.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write(path: Path, run_id: str, key: str, rows: int, importance: Mapping[str, float]
           ) -> None:
    entry = {"run_id": run_id, "rows": rows, "rows_digest": key,
             "importance": {c: float(v) for c, v in importance.items()}}
    with contextlib.suppress(OSError):  # a read-only workspace computes it each run
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(entry, indent=1) + "\n")
        return
    log.debug("could not keep the reference contributions in %s", path)
