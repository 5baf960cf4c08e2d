from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from flywheel.core.errors import ConfigError
from flywheel.core.spec import ProjectSpec, load_spec, parse_spec

MINIMAL = {"name": "p", "data": {"path": "d.csv"}, "target": {"column": "y", "task": "binary"}}


def test_minimal_spec_fills_every_other_section_with_defaults() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.training.search.trials == 30
    assert spec.validation.severity.missing_column == "error"
    assert spec.data.schema_file == "schema.yaml"


def test_spec_is_frozen() -> None:
    spec = parse_spec(MINIMAL)
    with pytest.raises(pydantic.ValidationError):
        spec.name = "other"  # type: ignore[misc]


def test_invalid_value_names_its_path_and_the_rule() -> None:
    raw = {**MINIMAL, "training": {"search": {"trials": 0}}}
    with pytest.raises(ConfigError) as info:
        parse_spec(raw)
    assert "training.search.trials: must be >= 1, got 0" in str(info.value)


def test_unknown_key_is_named_with_the_nearest_valid_key() -> None:
    raw = {**MINIMAL, "training": {"search": {"trails": 5}}}
    with pytest.raises(ConfigError) as info:
        parse_spec(raw)
    assert "training.search.trails: unknown key; did you mean 'trials'?" in str(info.value)


def test_unknown_top_level_section_suggests_the_section() -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec({**MINIMAL, "validaton": {}})
    assert "validaton: unknown key; did you mean 'validation'?" in str(info.value)


def test_wrong_type_and_bad_choice_are_each_reported() -> None:
    raw = {**MINIMAL, "target": {"column": "y", "task": "clustering"},
           "training": {"cv_folds": "five"}}
    with pytest.raises(ConfigError) as info:
        parse_spec(raw)
    text = str(info.value)
    assert "target.task: must be one of 'binary', 'multiclass' or 'regression', got 'clustering'" in text
    assert "training.cv_folds: must be an integer, got 'five'" in text
    assert info.value.problems and len(info.value.problems) == 2


def test_missing_required_section_is_reported() -> None:
    with pytest.raises(ConfigError, match="target: required, but missing"):
        parse_spec({"name": "p", "data": {"path": "d.csv"}})


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "flywheel.yaml"
    path.write_text("name: p\ndata:\n  path: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML.*line"):
        load_spec(path)


def test_empty_spec_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "flywheel.yaml"
    path.write_text("")
    with pytest.raises(ConfigError, match="got an empty file"):
        load_spec(path)


def test_missing_spec_points_to_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="flywheel init"):
        load_spec(tmp_path)


def test_relative_paths_resolve_against_the_spec_folder(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "flywheel.yaml").write_text(yaml.safe_dump(MINIMAL))
    spec = load_spec(tmp_path / "flywheel.yaml")
    assert spec.data_path == tmp_path.resolve() / "d.csv"
    assert isinstance(spec, ProjectSpec)


def test_the_commented_spec_written_by_init_parses_back_to_the_same_spec() -> None:
    import yaml

    from flywheel.core.template import render_spec

    spec = parse_spec({**MINIMAL, "target": {"column": "y", "task": "binary",
                                             "positive_class": "yes"}})
    text = render_spec(spec, inferred={"task": "inferred", "excluded": "id (id: unique)"})
    assert parse_spec(yaml.safe_load(text)) == spec
    assert "# inferred" in text and "learners:" in text and "tracking:" in text


def test_retraining_schedule_must_be_a_five_field_cron_expression() -> None:
    ok = parse_spec({**MINIMAL, "retraining": {"schedule": "0 3 * * 0"}})
    assert ok.retraining.schedule == "0 3 * * 0"
    with pytest.raises(ConfigError, match="retraining.schedule: .*cron"):
        parse_spec({**MINIMAL, "retraining": {"schedule": "every sunday"}})


def test_retraining_triggers_read_as_rules() -> None:
    spec = parse_spec({**MINIMAL, "retraining": {"triggers": ["drift_share > 0.3",
                                                              "roc_auc < 0.7"]}})
    assert [str(t) for t in spec.retraining.triggers] == ["drift_share > 0.3", "roc_auc < 0.7"]
    with pytest.raises(ConfigError, match="retraining.triggers"):
        parse_spec({**MINIMAL, "retraining": {"triggers": ["drift_share >> 0.3"]}})


def test_tracking_server_waits_default_to_seconds_and_are_bounded() -> None:
    tracking = parse_spec(MINIMAL).tracking
    # Worst case of the defaults against a refusing server: 3 attempts, pauses 0 + 1 s.
    assert (tracking.retries, tracking.backoff_seconds, tracking.connect_timeout_seconds,
            tracking.request_timeout_seconds) == (2, 1, 3.0, 30)
    with pytest.raises(ConfigError) as info:
        parse_spec({**MINIMAL, "tracking": {"retries": 11}})
    assert "tracking.retries: must be <= 10, got 11" in str(info.value)
