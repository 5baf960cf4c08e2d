from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flywheel.core.spec import CheckSeverity, ValidationSpec
from flywheel.data import DataSchema, infer_schema, validate_frame


@pytest.fixture
def schema(mixed: pd.DataFrame) -> DataSchema:
    return infer_schema(mixed, "label")


def failed(report: object) -> set[tuple[str, str]]:
    return {(f.where, f.check) for f in report.errors}  # type: ignore[attr-defined]


def test_the_data_a_schema_was_inferred_from_passes(mixed: pd.DataFrame, schema: DataSchema) -> None:
    report = validate_frame(mixed, schema)
    assert report.ok and report.failures == ()


def test_corrupted_copy_fails_with_each_column_and_check_named(mixed: pd.DataFrame,
                                                               schema: DataSchema) -> None:
    bad = mixed.copy()
    bad.loc[bad.index[:100], "x"] = np.nan                      # nulls in a null-free column
    bad.loc[bad.index[:80], "colour"] = "purple"                # unseen category at 20 %
    bad.loc[bad.index[:5], "count"] = 10_000                    # out of range
    bad = bad.drop(columns=["flag"])                            # dropped column
    report = validate_frame(bad, schema)
    assert not report.ok
    assert failed(report) == {("x", "null_rate"), ("colour", "unseen_category"),
                              ("count", "out_of_range"), ("flag", "missing_column")}
    by_check = {f.check: f for f in report.errors}
    assert by_check["null_rate"].failed == 100
    assert by_check["unseen_category"].failed == 80
    assert by_check["unseen_category"].examples == ("purple",)
    assert by_check["out_of_range"].failed == 5 and by_check["out_of_range"].examples == ("10000",)


def test_a_missing_column_no_model_reads_is_a_warning_not_an_error(mixed: pd.DataFrame) -> None:
    schema = infer_schema(mixed.assign(season=1), "label")
    assert schema.columns["season"].role == "constant"
    report = validate_frame(mixed, schema)
    assert report.ok
    (warning,) = [f for f in report.failures if f.where == "season"]
    assert warning.check == "missing_column" and warning.severity == "warning"


def test_unseen_categories_below_the_rate_limit_pass(mixed: pd.DataFrame, schema: DataSchema) -> None:
    bad = mixed.copy()
    bad.loc[bad.index[:2], "colour"] = "purple"  # 0.5 %, under the default 1 %
    assert validate_frame(bad, schema).ok


def test_values_that_are_not_numbers_fail_the_type_check(mixed: pd.DataFrame,
                                                         schema: DataSchema) -> None:
    bad = mixed.astype({"x": object})
    bad.loc[bad.index[:3], "x"] = "oops"
    report = validate_frame(bad, schema)
    (failure,) = [f for f in report.errors if f.check == "dtype"]
    assert failure.column == "x" and failure.failed == 3 and "oops" in failure.examples


def test_fractions_in_an_integer_column_fail_the_type_check(mixed: pd.DataFrame,
                                                            schema: DataSchema) -> None:
    bad = mixed.astype({"count": float})
    bad.loc[bad.index[0], "count"] = 2.5
    assert ("count", "dtype") in failed(validate_frame(bad, schema))


def test_extra_column_and_duplicates_are_warnings_by_default(mixed: pd.DataFrame,
                                                             schema: DataSchema) -> None:
    bad = pd.concat([mixed, mixed.head(3)], ignore_index=True).assign(new=1)
    report = validate_frame(bad, schema)
    assert report.ok
    assert {(f.where, f.check) for f in report.warnings} == {("new", "extra_column"),
                                                             ("(table)", "duplicate_rows")}


def test_severity_is_configurable_per_check(mixed: pd.DataFrame, schema: DataSchema) -> None:
    bad = mixed.copy()
    bad.loc[bad.index[:80], "colour"] = "purple"
    as_warning = ValidationSpec(severity=CheckSeverity(unseen_category="warning"))
    report = validate_frame(bad, schema, as_warning)
    assert report.ok and [f.check for f in report.warnings] == ["unseen_category"]
    off = ValidationSpec(severity=CheckSeverity(unseen_category="off"))
    assert validate_frame(bad, schema, off).failures == ()


def test_empty_data_fails(mixed: pd.DataFrame, schema: DataSchema) -> None:
    report = validate_frame(mixed.head(0), schema)
    assert failed(report) == {("(table)", "empty")}


def test_target_with_one_class_or_missing_fails(mixed: pd.DataFrame, schema: DataSchema) -> None:
    one_class = mixed.assign(label="yes")
    assert ("label", "target") in failed(validate_frame(one_class, schema))
    no_target = mixed.drop(columns=["label"])
    assert ("label", "target") in failed(validate_frame(no_target, schema))
    assert validate_frame(no_target, schema, require_target=False).ok


def test_categories_compare_as_text_across_file_types() -> None:
    frame = pd.DataFrame({"area": [415, 408, 510] * 20, "y": [0, 1] * 30})
    schema = infer_schema(frame.assign(area=frame["area"].astype(str)), "y")
    assert validate_frame(frame, schema).ok
