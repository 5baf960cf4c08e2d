"""Store URIs: ${VAR} expansion from the environment, masking and redaction of passwords."""

from __future__ import annotations

import logging
import urllib.parse

import pytest

from flywheel.core.errors import ConfigError
from flywheel.core.uris import (
    RedactingFilter,
    expand_env,
    is_database_uri,
    mask_uri,
    redact,
)

TEMPLATE = "postgresql://flywheel:${FW_TEST_PW}@db.internal:5432/${FW_TEST_DB}"


def test_variables_in_a_uri_expand_from_the_environment_when_it_is_used(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FW_TEST_PW", "first")
    monkeypatch.setenv("FW_TEST_DB", "mlflow")
    assert expand_env(TEMPLATE) == "postgresql://flywheel:first@db.internal:5432/mlflow"
    monkeypatch.setenv("FW_TEST_PW", "second")
    assert expand_env(TEMPLATE) == "postgresql://flywheel:second@db.internal:5432/mlflow"


def test_a_password_with_url_characters_is_quoted_so_the_uri_still_parses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FW_TEST_PW", "p@ss/wo:rd")
    monkeypatch.setenv("FW_TEST_DB", "mlflow")
    parsed = urllib.parse.urlsplit(expand_env(TEMPLATE))
    assert parsed.hostname == "db.internal" and parsed.port == 5432
    assert urllib.parse.unquote(parsed.password or "") == "p@ss/wo:rd"


def test_a_missing_variable_is_a_config_error_naming_it_and_not_the_password(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FW_TEST_PW", raising=False)
    monkeypatch.setenv("FW_TEST_DB", "mlflow")
    with pytest.raises(ConfigError, match="FW_TEST_PW, which is not set") as info:
        expand_env(TEMPLATE, setting="training.search.storage")
    assert "training.search.storage" in str(info.value)
    assert info.value.exit_code == 2


def test_a_uri_is_shown_with_its_password_masked() -> None:
    assert mask_uri("postgresql://u:hunter22@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert mask_uri("postgresql://u@h/d") == "postgresql://u@h/d"
    assert mask_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_redaction_removes_expanded_passwords_and_libpq_s_variable_from_any_text(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FW_TEST_PW", "expanded-secret-1")
    monkeypatch.setenv("FW_TEST_DB", "mlflow")
    monkeypatch.setenv("PGPASSWORD", "libpq-secret-2")
    expand_env(TEMPLATE)
    text = "failed: expanded-secret-1 and libpq-secret-2 and postgresql://a:lit3ral@h/d"
    clean = redact(text)
    for secret in ("expanded-secret-1", "libpq-secret-2", "lit3ral"):
        assert secret not in clean
    assert clean.count("***") == 3


def test_the_logging_filter_redacts_messages_and_their_arguments(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "libpq-secret-3")
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "pw is %s", ("libpq-secret-3",),
                               None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "pw is ***"


@pytest.mark.parametrize(("uri", "database"), [
    ("postgresql://u@h/d", True), ("postgresql+psycopg://u@h/d", True),
    ("sqlite:///x.db", False), ("http://h:5000", False), ("file:///x", False)])
def test_database_uris_are_told_from_files_and_servers(uri: str, database: bool) -> None:
    assert is_database_uri(uri) is database
