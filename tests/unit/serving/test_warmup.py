from __future__ import annotations

from flywheel.data import ColumnSchema, DataSchema
from flywheel.serving._inputs import InputChecker
from flywheel.serving._warmup import sample_records


def test_warm_up_records_pass_the_input_check_for_every_column_kind() -> None:
    schema = DataSchema(target="y", task="binary", rows=10, columns={
        "x": ColumnSchema(kind="numeric", min=-3.0, max=3.0),
        "n": ColumnSchema(kind="integer", min=0, max=40),
        "colour": ColumnSchema(kind="categorical", categories={"red": 0.6, "blue": 0.4}),
        "city": ColumnSchema(kind="categorical"),
        "flag": ColumnSchema(kind="boolean"),
        "when": ColumnSchema(kind="datetime"),
        "y": ColumnSchema(kind="categorical", role="target")})
    records = sample_records(schema, 200)
    rows, warnings = InputChecker(schema).records(records)
    assert len(rows) == 200 and warnings == []
    assert all(-3.0 <= r["x"] <= 3.0 for r in rows if r["x"] is not None)
    assert {r["colour"] for r in rows} == {"red", "blue", None}
