"""The SQLite online store (the embedded default) against the online-store contract, and how
views' values are stored (``ValueCodec``)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import orjson
import pytest

from flywheel.core.errors import FeatureStoreError
from flywheel.featurestore import SqliteOnlineStore
from flywheel.featurestore._codec import ValueCodec

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


def test_a_numeric_view_packs_its_values_and_reads_them_back_with_their_types() -> None:
    codec = ValueCodec(["DOUBLE", "BIGINT", "BOOLEAN", "FLOAT", "TINYINT"])
    value = codec.encode([1.5, -(2**63), True, 0.25, 7])
    assert codec.packed and value[:1] == b"\x01" and len(value) == 1 + 8 + 8 + 1 + 8 + 8
    assert codec.decode(value) == [1.5, -(2**63), True, 0.25, 7]
    assert [type(v) for v in codec.decode(value)] == [float, int, bool, float, int]


def test_a_null_nan_or_infinite_float_reads_back_none_as_json_made_it() -> None:
    codec = ValueCodec(["DOUBLE"] * 5)
    value = codec.encode([None, math.nan, math.inf, -math.inf, -2.0])
    assert value[:1] == b"\x02"  # says a float is null, so a lookup without one skips the check
    assert codec.decode(value) == [None, None, None, None, -2.0]


def test_a_row_packing_cannot_hold_exactly_is_written_as_a_json_array() -> None:
    codec = ValueCodec(["BIGINT", "BOOLEAN", "UBIGINT"])
    for row in ([None, True, 1], [1, None, 1], [1, False, 2**64 - 1]):
        value = codec.encode(list(row))
        assert value[:1] == b"["
        assert codec.decode(value) == row


def test_a_view_with_a_text_or_time_feature_stores_json_arrays_that_round_trip_exactly() -> None:
    codec = ValueCodec(["DOUBLE", "VARCHAR", "TIMESTAMP"])
    text = 'é\n"x"\x00 ✓'
    value = codec.encode([1.0, text, None])
    assert not codec.packed and value == orjson.dumps([1.0, text, None])
    assert codec.decode(value) == [1.0, text, None]


def test_values_written_as_json_arrays_before_packing_still_read() -> None:
    assert ValueCodec(["DOUBLE", "BIGINT"]).decode(b"[1.5,2]") == [1.5, 2]


def test_a_value_of_another_layout_is_refused_with_what_to_do() -> None:
    with pytest.raises(FeatureStoreError, match=r"an online value of 3 bytes does not match "
                                                r"its view's layout \(9 bytes, packed\); materialize "
                                                "the view again"):
        ValueCodec(["DOUBLE"]).decode(b"\x00\x01\x02")


def _packed(*values: float) -> bytes:
    return ValueCodec(["DOUBLE"] * len(values)).encode(list(values))


def test_packed_values_read_side_by_side_whichever_view_wrote_an_entity_first(
        tmp_path) -> None:
    online = SqliteOnlineStore(tmp_path / "online.db")
    online.write_chunk("e_c", "a__v1", [("1", 1.0, _packed(1.0))], run="a", chunk=0)
    online.write_chunk("e_c", "b__v1", [("1", 1.0, _packed(2.0, 3.0)), ("2", 1.0, _packed(5.0, 6.0))],
                       run="b", chunk=0)
    online.write_chunk("e_c", "a__v1", [("2", 1.0, _packed(4.0))], run="a", chunk=1)
    laid = online.read_joined("e_c", ["a__v1", "b__v1"], [], ["1", "2"])
    assert [bytes(value[0]) for value in laid if value is not None] == [
        _packed(1.0) + _packed(2.0, 3.0), _packed(4.0) + _packed(5.0, 6.0)]
    assert [bytes(value[0]) for value in online.read_joined("e_c", ["b__v1", "a__v1"], [], ["2"])
            if value is not None] == [_packed(5.0, 6.0) + _packed(4.0)]  # another order


def test_a_newer_value_that_is_not_packed_blanks_its_slot_and_an_older_one_changes_nothing(
        tmp_path) -> None:
    online = SqliteOnlineStore(tmp_path / "online.db")
    online.write_chunk("e_c", "a__v1", [("1", 1.0, _packed(1.0))], run="a", chunk=0)
    online.write_chunk("e_c", "a__v1", [("1", 2.0, b"[null]")], run="a", chunk=1)
    assert online.write_chunk("e_c", "a__v1", [("1", 0.5, _packed(9.0))], run="a", chunk=2) == 0
    assert online.read("e_c", ["a__v1"], ["1"]) == [[b"[null]"]]
    [laid] = online.read_joined("e_c", ["a__v1"], [], ["1"])
    assert laid is not None and bytes(laid[0]) == bytes(len(_packed(1.0)))
