"""The SQLite online store (the embedded default) against the online-store contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flywheel.featurestore import SqliteOnlineStore

from .online_contract import OnlineStoreContract


class TestSqliteOnlineStore(OnlineStoreContract):
    @pytest.fixture
    def online(self, tmp_path) -> Iterator[SqliteOnlineStore]:
        store = SqliteOnlineStore(tmp_path / "features" / "online.db")
        yield store
        store.close()


def test_a_second_connection_reads_what_the_first_wrote(tmp_path) -> None:
    writer = SqliteOnlineStore(tmp_path / "online.db")
    writer.write_chunk("e_store", "sales__v1", [("a", 1.0, b"[1]")], run="r", chunk=0)
    reader = SqliteOnlineStore(tmp_path / "online.db")
    assert reader.read("e_store", ["sales__v1"], ["a"]) == [[b"[1]"]]
