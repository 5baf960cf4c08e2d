"""The pieces of the training flow that need no store: the spec hash and the caveats."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flywheel.core.spec import ProjectSpec
from flywheel.data import infer_schema
from flywheel.pipelines._too_good import too_good_warnings
from flywheel.pipelines._train_parts import spec_hash_of
from flywheel.pipelines.train import with_overrides


def _spec(**sections: object) -> ProjectSpec:
    return ProjectSpec.model_validate({"name": "p", "data": {"path": "d.csv"},
                                       "target": {"column": "y", "task": "binary"}, **sections})


def test_the_spec_hash_covers_what_shapes_the_model_and_nothing_else() -> None:
    base = spec_hash_of(_spec())
    assert spec_hash_of(_spec(gates={"champion": {"margin": 0.05}})) == base
    assert spec_hash_of(_spec(training={"search": {"trials": 99, "timeout_seconds": 5}})) == base
    assert spec_hash_of(_spec(training={"search": {"seed": 7}})) != base
    assert spec_hash_of(_spec(training={"learners": ["linear"]})) != base


def test_running_the_search_on_ray_keeps_the_spec_hash_so_the_study_resumes() -> None:
    ray = {"backend": "ray", "ray_address": "127.0.0.1:6379", "workers": 8}
    assert spec_hash_of(_spec(training={"search": ray})) == spec_hash_of(_spec())


def test_a_timeout_without_a_trial_count_lifts_the_trial_count() -> None:
    spec = _spec()
    assert with_overrides(spec, timeout=300, until_budget=True).training.search.trials is None
    assert with_overrides(spec, timeout=300).training.search.trials == 30
    both = with_overrides(spec, timeout=300, trials=12, until_budget=True).training.search
    assert (both.trials, both.timeout_seconds) == (12, 300)


def test_near_perfect_scores_and_a_dominant_feature_are_warned_about_by_name() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({name: rng.normal(size=200) for name in ("rate", "income", "age")})
    frame["y"] = rng.choice(["a", "b"], 200)
    schema = infer_schema(frame, "y")
    assert schema.feature_columns == ["rate", "income", "age"]
    warnings = too_good_warnings("binary", {"roc_auc": 0.998},
                                 [("rate", 0.30, 0.01), ("income", 0.02, 0.01)], schema)
    assert any("near perfect" in w and "rate, income" in w for w in warnings)
    assert any("one feature, rate, carries 94%" in w for w in warnings)
    assert too_good_warnings("binary", {"roc_auc": 0.81}, [
        ("rate", 0.04, 0.01), ("income", 0.04, 0.01), ("age", 0.03, 0.01)], schema) == []
