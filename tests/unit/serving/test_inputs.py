from __future__ import annotations

import pytest

from flywheel.data import ColumnSchema, DataSchema
from flywheel.serving._inputs import InputChecker, InputProblems

FEATURES = [f"f{i:02d}" for i in range(12)]


def schema() -> DataSchema:
    columns = {name: ColumnSchema(kind="numeric") for name in FEATURES}
    columns["code"] = ColumnSchema(kind="categorical", categories={"1": 0.5, "2": 0.3, "9.5": 0.2})
    columns["city"] = ColumnSchema(kind="categorical", categories=None)  # any value allowed
    columns["y"] = ColumnSchema(kind="categorical", role="target")
    return DataSchema(target="y", task="binary", rows=10, columns=columns)


def record(**values: object) -> dict[str, object]:
    return {**{name: 1.0 for name in FEATURES}, "code": "1", "city": "Oslo", **values}


def test_missing_fields_are_listed_in_the_schemas_order() -> None:
    checker = InputChecker(schema())
    dropped = FEATURES[::-2]  # not the schema's order, and not sorted
    row = {k: v for k, v in record().items() if k not in dropped}
    with pytest.raises(InputProblems) as caught:
        checker.records(row)
    assert [p["loc"][2] for p in caught.value.problems] == sorted(dropped)


@pytest.mark.parametrize(("value", "text"), [(1, "1"), (2.0, "2"), (9.5, "9.5")])
def test_a_number_whose_text_is_a_known_category_is_read_as_that_category(
        value: object, text: str) -> None:
    rows, warnings = InputChecker(schema()).records(record(code=value))
    assert rows[0]["code"] == text and warnings == []


@pytest.mark.parametrize("value", [3, 1.5, True])
def test_a_number_or_boolean_that_is_no_known_category_is_kept_with_a_warning(
        value: object) -> None:
    rows, warnings = InputChecker(schema()).records([record(), record(code=value)])
    assert rows[1]["code"] == value
    (warning,) = warnings
    assert warning["loc"] == ["records", 1, "code"]
    assert "is not one of the 3 known categories" in warning["msg"]


def test_a_categorical_without_a_closed_list_takes_numbers_without_a_warning() -> None:
    rows, warnings = InputChecker(schema()).records(record(city=415))
    assert rows[0]["city"] == 415 and warnings == []


def test_columns_give_the_same_records_as_a_list_of_records() -> None:
    rows = [record(), record(f00=2.0, code="2")]
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    assert InputChecker(schema()).records({"columns": columns})[0] == rows


def test_every_mistyped_and_unknown_field_is_listed_with_its_row() -> None:
    rows = [record(), record(f03="high", extra=1.0), record(f05=float("nan"))]
    with pytest.raises(InputProblems) as caught:
        InputChecker(schema()).records(rows)
    locs = sorted(tuple(p["loc"]) for p in caught.value.problems)
    assert locs == [("records", 1, "extra"), ("records", 1, "f03"), ("records", 2, "f05")]


@pytest.mark.parametrize("body", ["a record", 3, None])
def test_a_body_that_is_no_record_list_or_columns_says_what_is_accepted(body: object) -> None:
    with pytest.raises(InputProblems) as caught:
        InputChecker(schema()).records(body)
    assert caught.value.problems[0]["loc"] == ["body"]
    assert "columns" in caught.value.problems[0]["msg"]


def test_more_rows_than_the_limit_are_refused() -> None:
    with pytest.raises(InputProblems):
        InputChecker(schema(), max_rows=3).records([record()] * 4)
