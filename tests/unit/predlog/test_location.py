"""monitoring.log_location and log_retention_days: where the prediction log lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.core.errors import ConfigError
from flywheel.core.spec import MonitoringSpec, parse_spec
from flywheel.predlog import open_location, resolve_location

BASE = {"name": "p", "data": {"path": "d.csv"}, "target": {"column": "y", "task": "binary"}}


def _monitoring(**fields: object) -> MonitoringSpec:
    return parse_spec({**BASE, "monitoring": fields}).monitoring


def test_the_log_defaults_to_the_workspace_predictions_folder(tmp_path: Path) -> None:
    spec = _monitoring()
    assert spec.log_location == ".flywheel/predictions"
    assert spec.log_retention_days is None
    assert resolve_location(spec.log_location, tmp_path) == str(tmp_path / ".flywheel/predictions")


def test_a_relative_location_is_relative_to_the_project_folder_and_an_absolute_one_is_kept(
        tmp_path: Path) -> None:
    assert resolve_location("logs/pred", tmp_path) == str(tmp_path / "logs/pred")
    assert resolve_location("/shared/log", tmp_path) == "/shared/log"
    assert resolve_location("file:///shared/log", tmp_path) == "/shared/log"
    assert resolve_location("s3://bucket/prefix/", tmp_path) == "s3://bucket/prefix"


@pytest.mark.parametrize(("value", "expected"), [
    ("ftp://host/x", "scheme 'ftp'"),
    ("  ", "log_location is empty"),
    ("s3://", "names no bucket"),
])
def test_a_bad_log_location_is_a_config_error_saying_what_to_write(value: str,
                                                                   expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        _monitoring(log_location=value)


def test_log_retention_days_must_be_positive() -> None:
    assert _monitoring(log_retention_days=30).log_retention_days == 30
    with pytest.raises(ConfigError, match="log_retention_days"):
        _monitoring(log_retention_days=0)


def test_an_object_store_uri_opens_on_pyarrows_file_system(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    filesystem, base = open_location("s3://bucket/prefix")
    assert filesystem.type_name == "s3" and base == "bucket/prefix"
