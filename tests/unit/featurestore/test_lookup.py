"""Serving's lookup on a real SQLite online store, through the input checker that /predict,
the Open Inference Protocol's infer and stream scoring share, and the joiner's reads: one per
entity-key set, packed and JSON values side by side, every feature type as it went in."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flywheel.core.workspace import Workspace
from flywheel.data import infer_schema
from flywheel.featurestore import FeatureJoiner, FeatureStore, JoinGroup, SqliteOnlineStore
from flywheel.featurestore._codec import ValueCodec
from flywheel.serving._inputs import InputChecker, InputProblems

from .conftest import START, sales_frame, spine_frame, view, write_project


@pytest.fixture
def checker(tmp_path) -> tuple[InputChecker, FeatureStore]:
    spec = write_project(tmp_path, views=[view(ttl=None)])
    store = FeatureStore(spec, Workspace(spec.root))
    joined, _, pins = store.training_set(spine_frame())
    store.materialize(end=(START + pd.Timedelta(days=40)).to_pydatetime())
    schema = infer_schema(joined.drop(columns=["at"]), "big")
    checker = InputChecker(schema)
    checker.joiner = store.joiner(pins, schema.feature_columns)
    return checker, store


def test_the_checker_fills_the_views_features_before_checking_records(checker) -> None:
    check, _ = checker
    rows = [{"store": "s03", "basket": 0.5}, {"store": "s04", "basket": -1.0}]
    assert check.check(rows, where="inputs") == []
    last = sales_frame().query("store == 's03'").iloc[-1]
    assert rows[0] == {"store": "s03", "basket": 0.5, "level": last["level"],
                       "footfall": last["footfall"]}


def test_a_bad_entity_key_is_reported_where_the_protocol_put_it(checker) -> None:
    check, _ = checker
    with pytest.raises(InputProblems) as raised:
        check.check([{"store": "s03", "basket": 0.5}, {"store": 3.5, "basket": 0.1}],
                    where="inputs")
    assert raised.value.problems == [{"loc": ["inputs", 1, "store"],
                                      "msg": "entity key must be text, got 3.5"}]


def test_a_miss_is_imputed_as_null_and_counted_and_a_sent_value_is_kept(checker) -> None:
    check, store = checker
    rows = [{"store": "nowhere", "basket": 0.5}, {"store": "s01", "basket": 0.5, "level": 7.0,
                                                  "footfall": 3}]
    assert check.check(rows) == []
    assert rows[0]["level"] is None and rows[0]["footfall"] is None
    assert rows[1]["level"] == 7.0
    assert check.joiner.stats() == {"lookups": 1, "misses": {"sales": 1}, "unavailable": 0}


class CountingStore(SqliteOnlineStore):
    """The SQLite store, counting the reads the joiner makes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: list[str] = []

    def read(self, table: str, columns: Sequence[str],
             keys: Sequence[str]) -> list[list[bytes | None]]:
        self.calls.append("read")
        return super().read(table, columns, keys)

    def read_joined(self, table: str, packed: Sequence[str], arrays: Sequence[str],
                    keys: Sequence[str]) -> list[tuple[bytes, bytes | str] | None]:
        self.calls.append("read_joined")
        return super().read_joined(table, packed, arrays, keys)


def _group(views: list[tuple[str, tuple[str, ...], ValueCodec]]) -> JoinGroup:
    return JoinGroup(table="e_c", entities=("c",), key_kinds=("integer",),
                     views=tuple((name, f"{name}__v1", features) for name, features, _ in views),
                     codecs=tuple(codec for _, _, codec in views))


def test_a_lookup_of_ten_packed_views_reads_one_record_once(tmp_path) -> None:
    online = CountingStore(tmp_path / "online.db")
    codec = ValueCodec(["DOUBLE", "BIGINT", "BOOLEAN", "DOUBLE"])
    views = [(f"v{v}", tuple(f"v{v}_f{f}" for f in range(4)), codec) for v in range(10)]
    for v, (name, _, _) in enumerate(views):
        online.write_chunk("e_c", f"{name}__v1", [("7", 1.0, codec.encode([v + 0.5, v, v % 2 == 0,
                                                                           None]))],
                           run=name, chunk=0)
    joiner = FeatureJoiner(online, [_group(views)], [f for _, fs, _ in views for f in fs])
    online.calls.clear()
    rows = [{"c": 7}]
    assert joiner(rows) == []
    assert online.calls == ["read_joined"]
    assert rows == [{f"v{v}_f{f}": value for v in range(10)
                     for f, value in enumerate([v + 0.5, v, v % 2 == 0, None])}]
    assert joiner.stats() == {"lookups": 1, "misses": {f"v{v}": 0 for v in range(10)},
                              "unavailable": 0}


def test_json_values_from_before_packing_and_misses_are_read_beside_packed_ones(
        tmp_path) -> None:
    online = CountingStore(tmp_path / "online.db")
    pair, flag = ValueCodec(["DOUBLE", "BIGINT"]), ValueCodec(["BOOLEAN"])
    text = ValueCodec(["VARCHAR"])
    online.write_chunk("e_c", "a__v1", [("1", 1.0, pair.encode([0.5, 1])), ("2", 1.0, b"[2.5,2]"),
                                        ("3", 1.0, pair.encode([3.5, 3]))], run="a", chunk=0)
    online.write_chunk("e_c", "t__v1", [("1", 1.0, text.encode(["é"])),
                                        ("2", 1.0, text.encode(["x"]))], run="t", chunk=0)
    online.write_chunk("e_c", "b__v1", [("1", 1.0, b"[true]"), ("2", 1.0, flag.encode([False]))],
                       run="b", chunk=0)
    group = _group([("a", ("x", "n"), pair), ("t", ("name",), text), ("b", ("flag",), flag)])
    joiner = FeatureJoiner(online, [group], ["x", "n", "name", "flag"])
    rows = [{"c": 1}, {"c": 2}, {"c": 3}, {"c": 4, "x": 9.0, "n": 9, "name": "sent", "flag": True}]
    assert joiner(rows) == []
    assert rows == [{"x": 0.5, "n": 1, "name": "é", "flag": True},
                    {"x": 2.5, "n": 2, "name": "x", "flag": False},
                    {"x": 3.5, "n": 3, "name": None, "flag": None},
                    {"x": 9.0, "n": 9, "name": "sent", "flag": True}]
    assert [list(row) for row in rows[:3]] == [["x", "n", "name", "flag"]] * 3  # view order
    assert joiner.stats() == {"lookups": 3, "misses": {"a": 0, "t": 1, "b": 1},
                              "unavailable": 0}


def test_every_feature_type_reads_back_through_the_joiner_as_it_went_in(tmp_path) -> None:
    profile = pd.DataFrame({
        "store": ["s01", "s02"], "day": [START, START],
        "tier": ["gold", 'é\n"x"'], "active": pd.array([True, None], dtype="boolean"),
        "visits": pd.array([3, None], dtype="Int64"), "small": pd.array([1, 2], dtype="Int8"),
        "score": [1.5, np.nan], "ratio": np.array([0.1, -0.0], dtype="float32"),
        "since": pd.to_datetime(["2023-05-01 10:00", None], utc=True)})
    numbers = profile[["store", "day", "active", "visits", "small", "score", "ratio"]].rename(
        columns=lambda c: c if c in ("store", "day") else f"n_{c}")
    spec = write_project(tmp_path, views=[
        view(ttl=None),
        view(name="profile", ttl=None, source="profile.parquet",
             features=["tier", "active", "visits", "small", "score", "ratio", "since"]),
        view(name="numbers", ttl=None, source="numbers.parquet",
             features=[c for c in numbers.columns if c.startswith("n_")])])
    profile.to_parquet(tmp_path / "profile.parquet")
    numbers.to_parquet(tmp_path / "numbers.parquet")
    store = FeatureStore(spec, Workspace(spec.root))
    store.materialize(end=(START + pd.Timedelta(days=40)).to_pydatetime())
    pins = {name: store.catalog.resolve(name).pin() for name in ("profile", "numbers")}
    joiner = store.joiner(pins, [f for pin in pins.values() for f in pin["features"]])
    rows = [{"store": "s01"}, {"store": "s02"}]
    assert joiner(rows) == []
    first = {"active": True, "visits": 3, "small": 1, "score": 1.5,
             "ratio": float(np.float32(0.1))}
    second = {"active": None, "visits": None, "small": 2, "score": None, "ratio": -0.0}
    assert rows == [
        {"tier": "gold", **first, "since": "2023-05-01T10:00:00+00:00",
         **{f"n_{k}": v for k, v in first.items()}},
        {"tier": 'é\n"x"', **second, "since": None, **{f"n_{k}": v for k, v in second.items()}}]
    assert [type(v) for v in rows[0].values()] == [str, bool, int, int, float, float, str,
                                                   bool, int, int, float, float]
    assert store.get(["s02"], views=["numbers"]) == {
        "numbers": {f"n_{k}": v for k, v in second.items()}}
    store.close()


def test_an_entity_lacking_a_view_between_others_misses_that_view_alone(tmp_path) -> None:
    online = SqliteOnlineStore(tmp_path / "online.db")
    codec = ValueCodec(["DOUBLE"])
    for name in ("a", "b", "c"):
        online.write_chunk("e_c", f"{name}__v1", [("1", 1.0, codec.encode([1.0]))], run=name,
                           chunk=0)
    online.write_chunk("e_c", "a__v1", [("2", 1.0, codec.encode([2.0]))], run="a", chunk=1)
    online.write_chunk("e_c", "c__v1", [("2", 1.0, codec.encode([4.0]))], run="c", chunk=1)
    group = _group([(name, (f"{name}_x",), codec) for name in ("a", "b", "c")])
    joiner = FeatureJoiner(online, [group], ["a_x", "b_x", "c_x"])
    rows = [{"c": 1}, {"c": 2}]
    assert joiner(rows) == []
    assert rows == [{"a_x": 1.0, "b_x": 1.0, "c_x": 1.0}, {"a_x": 2.0, "b_x": None, "c_x": 4.0}]
    assert joiner.stats()["misses"] == {"a": 0, "b": 1, "c": 0}


def test_a_store_written_before_packing_serves_its_json_arrays_as_they_were(tmp_path) -> None:
    online = CountingStore(tmp_path / "online.db")
    online.write_chunk("e_c", "a__v1", [("1", 1.0, b"[0.5,1]")], run="a", chunk=0)
    online.write_chunk("e_c", "b__v1", [("1", 1.0, b"[false]")], run="b", chunk=0)
    group = _group([("a", ("x", "n"), ValueCodec(["DOUBLE", "BIGINT"])),
                    ("b", ("flag",), ValueCodec(["BOOLEAN"]))])
    joiner = FeatureJoiner(online, [group], ["x", "n", "flag"])
    rows = [{"c": 1}]
    assert joiner(rows) == []
    assert rows == [{"x": 0.5, "n": 1, "flag": False}]
    assert joiner.stats()["misses"] == {"a": 0, "b": 0}
