"""Restore's rewrite of the old project folder in the restored SQLite stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flywheel.pipelines.backup import _rewrite_paths


def test_a_new_folder_named_like_the_old_one_plus_a_suffix_is_rewritten_once(
        tmp_path: Path) -> None:
    old, new = Path("/srv/churn"), Path("/srv/churn-restored")
    database = tmp_path / "store.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE runs (artifact_uri TEXT, source VARCHAR(500), n INTEGER)")
        db.executemany("INSERT INTO runs VALUES (?, ?, ?)", [
            ("file:///srv/churn/.flywheel/artifacts/1", "/srv/churn/.flywheel", 1),
            ("file:///srv/churnish/other", "/srv/churn", 2)])
    _rewrite_paths(database, old, new)
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT artifact_uri, source, n FROM runs ORDER BY n").fetchall()
    assert rows == [("file:///srv/churn-restored/.flywheel/artifacts/1",
                     "/srv/churn-restored/.flywheel", 1),
                    ("file:///srv/churnish/other", "/srv/churn-restored", 2)]
