"""View versions: a digest of the definition and the source's columns, numbered in order."""

from __future__ import annotations

import pytest
import yaml

from flywheel import featurestore
from flywheel.core.errors import ConfigError, FeatureStoreError
from flywheel.core.spec import load_spec, parse_spec
from flywheel.core.workspace import Workspace
from flywheel.featurestore import FeatureStore

from .conftest import sales_frame, view, write_project


def _edit(root, views) -> FeatureStore:
    raw = yaml.safe_load((root / "flywheel.yaml").read_text())
    raw["feature_store"]["views"] = views
    (root / "flywheel.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec(root / "flywheel.yaml")
    return FeatureStore(spec, Workspace(spec.root))


def test_featurestore_exports_are_exactly_the_public_names() -> None:
    public = {n for n in vars(featurestore) if not n.startswith("_")} - {"annotations"}
    assert sorted(featurestore.__all__) == sorted(public)


def test_editing_a_view_creates_the_next_version_and_new_rows_do_not(tmp_path) -> None:
    spec = write_project(tmp_path)
    store = FeatureStore(spec, Workspace(spec.root))
    first = store.catalog.resolve("sales")
    assert first.version == 1
    more = sales_frame(seed=9)
    more.to_parquet(tmp_path / "sales.parquet")  # new values, same columns
    assert store.catalog.resolve("sales").digest == first.digest
    edited = _edit(tmp_path, [view(ttl="5d")]).catalog.resolve("sales")
    assert edited.version == 2 and edited.digest != first.digest
    back = _edit(tmp_path, [view()]).catalog.resolve("sales")
    assert back.version == 1
    sales_frame().astype({"footfall": float}).to_parquet(tmp_path / "sales.parquet")
    assert _edit(tmp_path, [view()]).catalog.resolve("sales").version == 3
    assert [e["version"] for e in store.catalog.history("sales")] == [1, 2, 3]


def test_a_model_pins_what_it_needs_to_check_a_view_later(tmp_path) -> None:
    spec = write_project(tmp_path)
    pin = FeatureStore(spec, Workspace(spec.root)).pins()["sales"]
    assert pin["version"] == 1 and pin["entities"] == ["store"]
    assert pin["types"] == {"level": "DOUBLE", "footfall": "BIGINT"}
    assert pin["key_kinds"] == {"store": "text"} and pin["ttl"] == 3 * 86400


def test_a_compatible_edit_serves_the_new_version_and_an_incompatible_one_is_refused(
        tmp_path) -> None:
    spec = write_project(tmp_path)
    pins = FeatureStore(spec, Workspace(spec.root)).pins()
    joiner = _edit(tmp_path, [view(ttl="5d", features=["footfall", "level"])]).joiner(
        pins, ["store", "level", "footfall"])
    assert [column for _, column, _ in joiner.groups[0].views] == ["sales__v2"]
    sales_frame().astype({"level": str}).to_parquet(tmp_path / "sales.parquet")
    with pytest.raises(FeatureStoreError,
                       match="feature 'level' is VARCHAR, not DOUBLE"):
        _edit(tmp_path, [view()]).joiner(pins, ["store", "level", "footfall"])


def test_an_unknown_view_and_a_spine_naming_one_are_config_errors(tmp_path) -> None:
    spec = write_project(tmp_path)
    store = FeatureStore(spec, Workspace(spec.root))
    with pytest.raises(ConfigError, match="no feature view 'weather' in feature_store.views "
                                          r"\(sales\)"):
        store.catalog.resolve("weather")
    bad = spec.model_copy(update={"data": spec.data.model_copy(update={
        "spine": spec.data.spine.model_copy(update={"views": ["weather"]})})})
    with pytest.raises(ConfigError, match="no feature view 'weather'"):
        FeatureStore(bad, Workspace(spec.root)).spine_views()


@pytest.mark.parametrize(("change", "message"), [
    ({"ttl": "soon"}, "ttl: must be a duration such as 2h"),
    ({"ttl": -3}, "ttl: must be a positive duration"),
    ({"query": "SELECT 1"}, "set exactly one of `source`"),
    ({"features": ["level", "day"]}, r"\['day'\] are keys or times, not features"),
    ({"name": "bad name"}, "name: must match"),
])
def test_a_bad_view_definition_is_one_readable_config_problem(change, message) -> None:
    raw = {"name": "x", "data": {"path": "v.parquet"}, "target": {"column": "y",
                                                                  "task": "binary"},
           "feature_store": {"views": [{**view(), **change}]}}
    with pytest.raises(ConfigError, match=message):
        parse_spec(raw)


def test_an_online_store_that_is_neither_sqlite_nor_redis_is_refused() -> None:
    raw = {"name": "x", "data": {"path": "v.parquet"}, "target": {"column": "y",
                                                                  "task": "binary"},
           "feature_store": {"online": "memcached://here"}}
    with pytest.raises(ConfigError, match="feature_store.online: must be sqlite"):
        parse_spec(raw)


def test_a_compatible_edit_that_reorders_and_adds_features_fills_only_the_pinned_ones(
        tmp_path) -> None:
    sales = sales_frame().assign(staff=7)
    spec = write_project(tmp_path, sales=sales, views=[view(ttl=None)])
    pins = FeatureStore(spec, Workspace(spec.root)).pins()
    store = _edit(tmp_path, [view(ttl=None, features=["staff", "footfall", "level"])])
    store.materialize()
    rows = [{"store": "s01"}]
    assert store.joiner(pins, ["store", "level", "footfall"])(rows) == []
    last = sales[sales["store"] == "s01"].iloc[-1]
    assert rows == [{"store": "s01", "level": last["level"], "footfall": last["footfall"]}]
