from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flywheel.core.errors import DataError
from flywheel.data import infer_positive_class, infer_schema, infer_task


@pytest.mark.parametrize(("values", "task"), [
    (["yes", "no"] * 10, "binary"),
    ([0, 1] * 10, "binary"),
    ([True, False] * 10, "binary"),
    (["a", "b", "c"] * 10, "multiclass"),
    ([1, 2, 3, 4] * 10, "multiclass"),
    (list(np.linspace(0, 1, 40)), "regression"),
    (list(range(100)), "regression"),
])
def test_task_is_inferred_from_the_target(values: list[object], task: str) -> None:
    assert infer_task(pd.Series(values, name="y")) == task


def test_single_valued_target_is_refused() -> None:
    with pytest.raises(DataError, match="at least two"):
        infer_task(pd.Series(["a"] * 20, name="y"))


def test_positive_class_prefers_yes_then_the_rarer_label() -> None:
    assert infer_positive_class(pd.Series(["no", "yes", "no"])) == "yes"
    assert infer_positive_class(pd.Series(["ok", "ok", "fraud"])) == "fraud"


def test_schema_records_kinds_ranges_categories_and_roles(mixed: pd.DataFrame) -> None:
    schema = infer_schema(mixed, "label")
    cols = schema.columns
    assert schema.task == "binary" and schema.rows == len(mixed)
    assert cols["x"].kind == "numeric" and cols["x"].min == pytest.approx(mixed["x"].min())
    assert cols["count"].kind == "integer"
    assert cols["colour"].kind == "categorical"
    assert set(cols["colour"].categories or {}) == {"red", "green", "blue"}
    assert sum((cols["colour"].categories or {}).values()) == pytest.approx(1.0, abs=1e-4)
    assert cols["flag"].kind == "boolean"
    assert cols["when"].kind == "datetime"
    assert cols["customer_id"].role == "id"
    assert cols["constant"].role == "constant"
    assert cols["label"].role == "target"
    assert cols["x"].role == "feature"
    assert schema.feature_columns == ["x", "count", "colour", "flag", "when"]


def test_null_rate_and_limit_are_recorded(mixed: pd.DataFrame) -> None:
    mixed.loc[mixed.index[:40], "x"] = np.nan
    col = infer_schema(mixed, "label").columns["x"]
    assert col.nullable and col.null_rate == pytest.approx(0.1)
    assert col.max_null_rate > col.null_rate
    assert infer_schema(mixed, "label").columns["count"].max_null_rate == 0.0


def test_column_derived_from_the_target_is_flagged_as_leakage(mixed: pd.DataFrame) -> None:
    mixed["label_code"] = (mixed["label"] == "yes").astype(int) * 10 + 3
    noisy = mixed["x"] + np.random.default_rng(1).normal(size=len(mixed))
    mixed["informative"] = noisy
    cols = infer_schema(mixed, "label").columns
    assert cols["label_code"].role == "leakage" and "target" in (cols["label_code"].reason or "")
    assert cols["informative"].role == "feature"


def test_regression_target_copy_is_flagged_as_leakage() -> None:
    rng = np.random.default_rng(0)
    y = rng.gamma(2.0, 100.0, size=500)
    frame = pd.DataFrame({"price": y, "price_eur": y * 0.9 + 1, "size": y + rng.normal(0, 300, 500)})
    cols = infer_schema(frame, "price").columns
    assert cols["price_eur"].role == "leakage"
    assert cols["size"].role == "feature"


def test_missing_target_suggests_the_nearest_column(mixed: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="did you mean 'label'"):
        infer_schema(mixed, "lable")


def test_too_few_rows_are_refused(mixed: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="has 1 row"):
        infer_schema(mixed.head(1), "label")


def test_schema_round_trips_through_yaml(tmp_path: object, mixed: pd.DataFrame) -> None:
    from pathlib import Path

    from flywheel.data import load_schema

    path = Path(str(tmp_path)) / "schema.yaml"
    schema = infer_schema(mixed, "label")
    schema.save(path)
    assert load_schema(path) == schema
    assert path.read_text().startswith("# flywheel data schema")


def test_positive_class_of_a_boolean_target_is_spelled_as_training_encodes_it() -> None:
    from flywheel.data import infer_positive_class

    assert infer_positive_class(pd.Series([True, False, False])) == "true"
    assert infer_positive_class(pd.Series([1.0, 0.0, 0.0])) == "1"


def _loans(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A loans-like table: the rate comes from the borrower; grade is binned from the rate and
    the installment computed from rate, term and amount, as on a real lending platform."""
    rng = np.random.default_rng(seed)
    score = rng.normal(690, 50, n)
    dti = rng.uniform(0, 40, n)
    term = rng.choice([36, 60], n, p=[0.7, 0.3])
    amount = np.round(rng.lognormal(9.5, 0.6, n), -2).clip(1000, 40000)
    rate = np.round((13 - 0.05 * (score - 690) + 0.1 * (dti - 20) + 2.0 * (term == 60)
                     + rng.normal(0, 2.5, n)).clip(5, 30), 2)
    grade = np.array(list("ABCDEFG"))[np.digitize(rate + rng.normal(0, 0.4, n),
                                                  [8, 11, 14, 17, 20, 24])]
    monthly = rate / 1200
    return pd.DataFrame({
        "loan_amount": amount, "term": term, "interest_rate": rate, "grade": grade,
        "installment": np.round(amount * monthly / (1 - (1 + monthly) ** -term), 2),
        "annual_income": rng.lognormal(11, 0.5, n), "dti": dti, "credit_score": score,
        "home_ownership": rng.choice(["RENT", "OWN", "MORTGAGE"], n),
    })


def test_init_flags_columns_that_together_compute_the_target_and_a_grade_binned_from_it() -> None:
    cols = infer_schema(_loans(), "interest_rate").columns
    for name in ("installment", "loan_amount", "term"):
        assert cols[name].role == "feature"  # flagged for review, not dropped
        assert "almost exactly a function of loan_amount, term, installment" in (
            cols[name].reason or "")
    assert "predicts interest_rate nearly on its own" in (cols["grade"].reason or "")
    assert all(cols[name].reason is None for name in
               ("annual_income", "dti", "credit_score", "home_ownership"))


def test_a_strong_but_honest_predictor_is_not_flagged() -> None:
    rng = np.random.default_rng(0)
    carat = rng.gamma(2.0, 0.4, 2000)
    cut = rng.choice(["fair", "good", "ideal"], 2000)
    price = 4000 * carat ** 1.7 * np.exp(rng.normal(0, 0.25, 2000) + 0.1 * (cut == "ideal"))
    cols = infer_schema(pd.DataFrame({"carat": carat, "cut": cut, "price": price}),
                        "price").columns
    assert cols["carat"].reason is None and cols["cut"].reason is None
