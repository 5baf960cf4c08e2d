from __future__ import annotations

import optuna
import pytest

from flywheel.core.errors import ConfigError
from flywheel.core.spec import CustomLearnerSpec, ParamSpace, TrainingSpec
from flywheel.training import BUILTIN_LEARNERS, resolve_learners
from tests.conftest import require_learner


def test_builtin_learners_build_for_every_task() -> None:
    for learner in BUILTIN_LEARNERS.values():
        if learner.package:
            require_learner(learner.package)
        trial = optuna.trial.FixedTrial(
            {name: values[0] for name, values in learner.grid_values().items()})
        params = learner.suggest(trial)
        for task in ("binary", "multiclass", "regression"):
            assert hasattr(learner.build(params, task, 0, 1), "fit")


def test_custom_estimator_by_import_path_with_its_search_space() -> None:
    spec = TrainingSpec(learners=["trees"], custom_learners=[CustomLearnerSpec(
        name="trees", estimator="sklearn.ensemble.ExtraTreesClassifier", params={"n_jobs": 1},
        search_space={"max_depth": ParamSpace(type="int", low=2, high=8),
                       "criterion": ParamSpace(type="categorical", choices=["gini", "entropy"])},
    )])
    (learner,) = resolve_learners(spec)
    params = learner.suggest(optuna.trial.FixedTrial({"trees.max_depth": 3,
                                                      "trees.criterion": "gini"}))
    model = learner.build(params, "binary", 7, 1)
    assert model.get_params()["max_depth"] == 3 and model.get_params()["random_state"] == 7
    assert model.get_params()["n_jobs"] == 1


@pytest.mark.parametrize(("custom", "message"), [
    ({"estimator": "sklearn.ensemble.NoSuchModel"}, "cannot import"),
    ({"estimator": "nosuchpackage.Model"}, "cannot import"),
    ({"estimator": "os.path.join"}, "is not a scikit-learn estimator"),
    ({"estimator": "sklearn.ensemble.ExtraTreesClassifier",
      "search_space": {"depth": {"type": "int", "low": 1, "high": 3}}}, "no parameter"),
])
def test_bad_custom_learner_is_a_config_error_naming_the_field(custom: dict[str, object],
                                                               message: str) -> None:
    spec = TrainingSpec.model_validate({"learners": ["x"],
                                        "custom_learners": [{"name": "x", **custom}]})
    with pytest.raises(ConfigError, match=f"training.custom_learners.x.*{message}"):
        resolve_learners(spec)


def test_unknown_learner_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown learner 'xgb'.*lightgbm"):
        resolve_learners(TrainingSpec(learners=["xgb"]))
