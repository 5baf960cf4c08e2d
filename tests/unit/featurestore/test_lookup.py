"""Serving's lookup on a real SQLite online store, through the input checker that /predict,
the Open Inference Protocol's infer and stream scoring share."""

from __future__ import annotations

import pandas as pd
import pytest

from flywheel.core.workspace import Workspace
from flywheel.data import infer_schema
from flywheel.featurestore import FeatureStore
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
