"""Point-in-time joins on DuckDB's ASOF JOIN: never a later row, TTL, ties, order, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flywheel.core.errors import FeatureStoreError
from flywheel.core.workspace import Workspace
from flywheel.featurestore import FeatureStore

from .conftest import START, sales_frame, spine_frame, view, write_project


def _store(root: Path, **kwargs: object) -> FeatureStore:
    spec = write_project(root, **kwargs)  # type: ignore[arg-type]
    return FeatureStore(spec, Workspace(spec.root))


def test_a_feature_row_dated_one_second_after_an_event_is_never_joined_to_it(tmp_path) -> None:
    event = START + pd.Timedelta(hours=12)
    sales = pd.DataFrame({"store": ["s01", "s01"], "day": [event - pd.Timedelta(hours=2),
                                                          event + pd.Timedelta(seconds=1)],
                          "level": [1.0, 99.0], "footfall": [10, 990]})
    spine = pd.DataFrame({"store": ["s01", "s01"],
                          "at": [event, event + pd.Timedelta(seconds=1)], "big": ["no", "yes"]})
    store = _store(tmp_path, sales=sales, spine=spine)
    joined, _, _ = store.training_set(spine)
    assert joined["level"].tolist() == [1.0, 99.0]  # the later row only from its own second on
    assert joined["footfall"].tolist() == [10, 990]


def test_only_rows_at_or_before_the_event_are_joined_on_random_data(tmp_path) -> None:
    sales = sales_frame(seed=3)
    spine = spine_frame(n=2000, seed=4, sales=sales)
    store = _store(tmp_path, sales=sales, spine=spine)
    joined, report, _ = store.training_set(spine)
    day_of = sales.set_index(["store", "level"])["day"]
    for store_id, at, level in joined[["store", "at", "level"]].itertuples(index=False):
        if not np.isnan(level):
            assert day_of.loc[(store_id, level)] <= at
    assert report.rows == len(spine) and 0 < report.matched["sales"] <= len(spine)


def test_the_join_equals_a_brute_force_join_with_ttl(tmp_path) -> None:
    sales = sales_frame(seed=5).sample(frac=0.6, random_state=0)  # gaps longer than the TTL
    spine = spine_frame(n=800, seed=6, sales=sales)
    store = _store(tmp_path, sales=sales, spine=spine, views=[view(ttl="36h")])
    joined, _, _ = store.training_set(spine)
    ttl = pd.Timedelta(hours=36)
    for row in joined.itertuples(index=False):
        rows = sales[(sales["store"] == row.store) & (sales["day"] <= row.at)
                     & (sales["day"] >= row.at - ttl)]
        if rows.empty:
            assert np.isnan(row.level) and pd.isna(row.footfall)
        else:
            latest = rows.sort_values("day").iloc[-1]
            assert row.level == latest["level"] and row.footfall == latest["footfall"]


def test_the_joined_set_keeps_the_spine_order_and_columns(tmp_path) -> None:
    spine = spine_frame(n=500, seed=7).sample(frac=1.0, random_state=1).reset_index(drop=True)
    store = _store(tmp_path, spine=spine)
    joined, _, _ = store.training_set(spine)
    pd.testing.assert_frame_equal(joined[spine.columns.tolist()], spine)
    assert joined.columns.tolist() == [*spine.columns, "level", "footfall"]


def test_rows_of_the_same_entity_and_time_are_broken_by_created_time(tmp_path) -> None:
    day = START + pd.Timedelta(days=1)
    sales = pd.DataFrame({"store": ["s01"] * 3, "day": [day] * 3, "level": [1.0, 3.0, 2.0],
                          "footfall": [1, 3, 2],
                          "written": pd.to_datetime(["2024-01-02 01:00", "2024-01-02 03:00",
                                                     "2024-01-02 02:00"], utc=True)})
    spine = pd.DataFrame({"store": ["s01"], "at": [day + pd.Timedelta(hours=1)], "big": ["no"]})
    store = _store(tmp_path, sales=sales, spine=spine, views=[view(created_time="written")])
    joined, _, _ = store.training_set(spine)
    assert joined["level"].tolist() == [3.0]


def test_event_times_as_iso_text_and_epoch_seconds_join_like_timestamps(tmp_path) -> None:
    sales = sales_frame()
    spine = spine_frame(n=300, seed=8, sales=sales)
    expected, _, _ = _store(tmp_path / "a", sales=sales, spine=spine).training_set(spine)
    as_text = sales.assign(day=sales["day"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    as_epoch = spine.assign(at=spine["at"].astype("int64") / 1e9)
    joined, _, _ = _store(tmp_path / "b", sales=as_text, spine=as_epoch).training_set(as_epoch)
    assert joined["level"].equals(expected["level"])


def test_a_view_whose_source_lacks_a_declared_column_is_refused_by_name(tmp_path) -> None:
    store = _store(tmp_path, views=[view(features=["level", "weather"])])
    with pytest.raises(FeatureStoreError, match=r"lacks the declared column\(s\) \['weather'\]"):
        store.training_set(spine_frame())


def test_an_entity_key_of_another_type_than_the_spines_is_refused(tmp_path) -> None:
    sales = sales_frame().assign(store=lambda f: f["store"].str[1:].astype(int))
    store = _store(tmp_path, sales=sales)
    with pytest.raises(FeatureStoreError, match="entity key 'store' is VARCHAR in the spine but "
                                                "BIGINT in view 'sales'"):
        store.training_set(spine_frame())


def test_an_event_time_that_cannot_be_read_is_refused_with_an_example(tmp_path) -> None:
    sales = sales_frame().astype({"day": str})
    sales.loc[5, "day"] = "yesterday"
    store = _store(tmp_path, sales=sales)
    with pytest.raises(FeatureStoreError, match=r"1 value\(s\) of 'day' are not a time "
                                                r"\(such as 'yesterday'\)"):
        store.training_set(spine_frame())


def test_a_spine_with_no_matching_entities_is_refused(tmp_path) -> None:
    spine = spine_frame().assign(store="nowhere")
    store = _store(tmp_path, spine=spine)
    with pytest.raises(FeatureStoreError, match="no spine row matched any feature view"):
        store.training_set(spine)


def test_a_feature_named_like_a_spine_column_is_refused(tmp_path) -> None:
    spine = spine_frame().assign(level=1.0)
    store = _store(tmp_path, spine=spine)
    with pytest.raises(FeatureStoreError, match="feature 'level' of view 'sales' is also a "
                                                "column of the spine"):
        store.training_set(spine)


def test_the_parquet_join_holds_the_frame_joins_rows_in_the_spines_order_across_batches(
        tmp_path, monkeypatch) -> None:
    from flywheel.featurestore import _pit, join_to_parquet

    monkeypatch.setattr(_pit, "_BATCH_ROWS", 300)  # four batches, each gathered on its own
    spine = spine_frame(n=1100, seed=8).sample(frac=1.0, random_state=2).reset_index(drop=True)
    store = _store(tmp_path, spine=spine)
    expected, _, _ = store.training_set(spine)
    spine.to_parquet(tmp_path / "spine.parquet")
    views = [store.catalog.resolve("sales")]
    report = join_to_parquet(store.catalog.con, tmp_path / "spine.parquet", "at", views,
                             tmp_path / "joined.parquet")
    written = pd.read_parquet(tmp_path / "joined.parquet")
    assert report.rows == 1100 and report.matched["sales"] == expected["level"].notna().sum()
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)


def _three_views(root: Path) -> tuple[FeatureStore, pd.DataFrame, dict[str, dict[str, object]]]:
    """Two views on `store` (TTLs 36 h and 12 h, rows tied on store and time broken by their
    created time) and one on `region` without TTL whose text feature misses: regions it lacks,
    events before its first row. Times are whole seconds, as DuckDB keeps microseconds."""
    rng = np.random.default_rng(11)
    sales = sales_frame(seed=9).sample(frac=0.7, random_state=3)
    # A tie on every fifth row: the same store and day, written later, with other values.
    tied = sales.iloc[::5].assign(level=lambda f: f["level"] + 100.0,
                                  footfall=lambda f: f["footfall"] + 1000)
    sales = pd.concat([sales.assign(written=START), tied.assign(written=START
                                                               + pd.Timedelta(hours=1))])
    sales = sales.sample(frac=1.0, random_state=4)  # a tie's later-written row may come first
    n = 900
    promo = pd.DataFrame({
        "store": [f"s{int(s):02d}" for s in rng.integers(0, 40, n)],
        "hour": START + pd.to_timedelta(rng.integers(0, 30 * 24, n), unit="h"),
        "discount": rng.uniform(0, 0.5, n).round(3),
        "started": START + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
        "entered": START + pd.to_timedelta(rng.permutation(n), unit="s")})
    promo = pd.concat([promo, promo.iloc[::7].assign(discount=0.9, entered=START
                                                     + pd.Timedelta(days=40))])
    promo = promo.sample(frac=1.0, random_state=5)
    regions = pd.DataFrame({
        "region": ["north", "south", "east", "north", "south", "east", "north"],
        "since": START + pd.to_timedelta([2, 3, 4, 10, 15, 20, 25], unit="D"),
        "manager": ["ann", "bo", "cy", "dee", "ed", "flo", "gus"],
        "size": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]})
    spine = spine_frame(n=1000, seed=12, sales=sales).assign(
        at=lambda f: f["at"].dt.floor("s"),
        region=lambda f: rng.choice(["north", "south", "east", "west"], len(f)))
    views = [view(ttl="36h", created_time="written"),
             {"name": "promo", "entities": ["store"], "event_time": "hour", "ttl": "12h",
              "created_time": "entered", "source": "promo.parquet",
              "features": ["discount", "started"]},
             {"name": "regions", "entities": ["region"], "event_time": "since",
              "source": "regions.parquet", "features": ["manager", "size"]}]
    store = _store(root, sales=sales, spine=spine, views=views)
    promo.to_parquet(root / "promo.parquet")
    regions.to_parquet(root / "regions.parquet")
    alone = {"sales": {"frame": sales, "key": "store", "time": "day", "created": "written",
                       "ttl": pd.Timedelta(hours=36), "features": ["level", "footfall"]},
             "promo": {"frame": promo, "key": "store", "time": "hour", "created": "entered",
                       "ttl": pd.Timedelta(hours=12), "features": ["discount", "started"]},
             "regions": {"frame": regions, "key": "region", "time": "since", "created": None,
                         "ttl": None, "features": ["manager", "size"]}}
    return store, spine, alone


def _brute_force(spine: pd.DataFrame, frame: pd.DataFrame, key: str, time: str,
                 created: str | None, ttl: pd.Timedelta | None,
                 features: list[str]) -> list[dict[str, object] | None]:
    """For each spine row, the view's latest row at or before it (within ``ttl``; ties on
    time to the latest ``created``), or None."""
    order = [time] if created is None else [time, created]
    by_key: dict[object, list[dict[str, object]]] = {}
    for record in frame.sort_values(order).to_dict("records"):  # every row of each entity
        by_key.setdefault(record[key], []).append(record)
    found: list[dict[str, object] | None] = []
    for entity, at in zip(spine[key], spine["at"], strict=True):
        rows = [r for r in by_key.get(entity, []) if r[time] <= at  # type: ignore[operator]
                and (ttl is None or r[time] >= at - ttl)]  # type: ignore[operator]
        found.append(rows[-1] if rows else None)
    return found


def _assert_equals_each_view_alone(joined: pd.DataFrame, spine: pd.DataFrame,
                                   alone: dict[str, dict[str, object]]) -> dict[str, int]:
    matched = {}
    for name, how in alone.items():
        expected = _brute_force(spine, **how)  # type: ignore[arg-type]
        matched[name] = sum(e is not None for e in expected)
        for i, want in enumerate(expected):
            for feature in how["features"]:  # type: ignore[attr-defined]
                got = joined[feature].iloc[i]
                if want is None:
                    assert pd.isna(got), (name, i, feature, got)
                else:
                    assert got == want[feature], (name, i, feature, got, want[feature])
    return matched


def test_views_sharing_a_key_with_other_ttls_and_ties_join_as_each_view_alone(tmp_path) -> None:
    store, spine, alone = _three_views(tmp_path)
    joined, report, _ = store.training_set(spine)
    matched = _assert_equals_each_view_alone(joined, spine, alone)
    assert report.matched == matched
    # Each view both matches and misses here, so every path (hit, TTL, miss) is taken.
    assert all(0 < count < len(spine) for count in matched.values())
    assert joined["manager"].isna().any() and joined["manager"].notna().any()


def test_the_parquet_join_of_three_views_equals_each_view_alone_across_batches(
        tmp_path, monkeypatch) -> None:
    from flywheel.featurestore import _pit, join_to_parquet

    monkeypatch.setattr(_pit, "_BATCH_ROWS", 300)  # four batches: both buffer sets reused
    store, spine, alone = _three_views(tmp_path)
    spine.to_parquet(tmp_path / "spine.parquet")
    views = [store.catalog.resolve(name) for name in ("sales", "promo", "regions")]
    report = join_to_parquet(store.catalog.con, tmp_path / "spine.parquet", "at", views,
                             tmp_path / "joined.parquet")
    written = pd.read_parquet(tmp_path / "joined.parquet")
    assert report.matched == _assert_equals_each_view_alone(written, spine, alone)
    pd.testing.assert_frame_equal(written[spine.columns.tolist()], spine, check_dtype=False)


def test_join_batches_that_miss_or_invent_a_spine_row_are_refused() -> None:
    import pyarrow as pa

    from flywheel.featurestore import _pit

    def batches(rows: list[int]) -> pa.RecordBatchReader:
        batch = pa.record_batch({"row": pa.array(rows, pa.int64()),
                                 "view": pa.array([7] * len(rows), pa.int64())})
        return pa.RecordBatchReader.from_batches(batch.schema, [batch])

    (index,) = _pit._scatter(batches([2, 0, 1]), 3, 1)
    assert index.tolist() == [7, 7, 7]
    for rows in ([0, 1], [0, 1, 3]):  # a row missing; a row the spine does not have
        with pytest.raises(FeatureStoreError, match="the spine changed while it was read"):
            _pit._scatter(batches(rows), 3, 1)
