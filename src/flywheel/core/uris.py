"""Store URIs with secrets kept out of sight: ``${VAR}`` expansion, masking and redaction.

A URI in flywheel.yaml names its password through the environment,
``postgresql://flywheel:${PGPASSWORD_FLYWHEEL}@db:5432/mlflow``, or leaves it out for libpq's own
``PGPASSWORD`` (or ``~/.pgpass``). :func:`expand_env` fills the variables in at the moment a
connection is made and remembers each secret it placed, so :func:`redact` can take it out of any
text flywheel shows (messages, logs, ``--json`` output); :func:`mask_uri` shows a URI with its
password as ``***``.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse

from flywheel.core.errors import ConfigError

__all__ = ["MASK", "RedactingFilter", "expand_env", "install_redaction", "is_database_uri",
           "mask_uri", "redact", "remember_secret"]

MASK = "***"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# scheme://user:password@ — the password part of any URI in a text.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*:)(?P<pw>[^@\s'\"]+)@")
# Variables whose values are passwords wherever they appear (libpq's, MLflow's, S3's).
_SECRET_ENV = ("PGPASSWORD", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
               "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_MIN_SECRET = 3  # shorter values would mask ordinary words
_SECRETS: set[str] = set()
_DATABASE_SCHEMES = ("postgresql", "postgres", "mysql", "mssql", "oracle")


def remember_secret(value: str) -> None:
    """Have :func:`redact` replace ``value`` (and its URL-quoted form) from now on."""
    if len(value) >= _MIN_SECRET:
        _SECRETS.add(value)
        _SECRETS.add(urllib.parse.quote(value, safe=""))


def expand_env(uri: str, *, setting: str = "tracking.tracking_uri") -> str:
    """``uri`` with every ``${VAR}`` replaced by the variable's value from the environment.

    A value placed in the URI's user-info part (``user:${PW}@``) is URL-quoted, so a password
    may hold ``@``, ``/`` or ``:``; it is remembered as a secret for :func:`redact`, as is the
    password of the expanded URI.

    Args:
        uri: The URI as written in flywheel.yaml.
        setting: The spec key holding ``uri``, named in the error.

    Raises:
        ConfigError: If a variable named in ``uri`` is not set.
    """
    userinfo_end = _userinfo_end(uri)
    missing = [m.group(1) for m in _VAR.finditer(uri) if m.group(1) not in os.environ]
    if missing:
        names = ", ".join(dict.fromkeys(missing))
        raise ConfigError(
            f"{setting} ({mask_uri(uri)}) names the environment variable(s) {names}, which "
            f"is not set; export it before running flywheel (for a PostgreSQL password, "
            f"libpq's PGPASSWORD also works without naming it in the URI).")

    def value(match: re.Match[str]) -> str:
        text = os.environ[match.group(1)]
        if match.start() < userinfo_end:
            remember_secret(text)
            return urllib.parse.quote(text, safe="")
        return text

    expanded = _VAR.sub(value, uri)
    password = urllib.parse.urlsplit(expanded).password if "://" in expanded else None
    if password:
        remember_secret(password)
        remember_secret(urllib.parse.unquote(password))
    return expanded


def mask_uri(uri: str) -> str:
    """``uri`` with the password of its user-info part shown as ``***``."""
    return _USERINFO.sub(lambda m: f"{m.group('head')}{MASK}@", uri)


def redact(text: str) -> str:
    """``text`` without secrets: URI passwords masked, remembered secrets and the values of
    password variables (``PGPASSWORD``, ``AWS_SECRET_ACCESS_KEY``, ...) replaced by ``***``."""
    out = mask_uri(text)
    secrets = set(_SECRETS)
    secrets.update(v for name in _SECRET_ENV
                   if len(v := os.environ.get(name, "")) >= _MIN_SECRET)
    for secret in sorted(secrets, key=len, reverse=True):
        out = out.replace(secret, MASK)
    return out


def is_database_uri(uri: str) -> bool:
    """Whether ``uri`` names a database server reached through SQLAlchemy (PostgreSQL, ...)."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    return scheme.split("+", 1)[0] in _DATABASE_SCHEMES


def _userinfo_end(uri: str) -> int:
    """Where the user-info part of ``uri`` ends (the ``@`` before the host), or 0."""
    if "://" not in uri:
        return 0
    start = uri.index("://") + 3
    slash = uri.find("/", start)
    authority = uri[start:] if slash < 0 else uri[start:slash]
    at = authority.rfind("@")
    return start + at if at >= 0 else 0


class RedactingFilter(logging.Filter):
    """A logging filter that takes secrets (see :func:`redact`) out of every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_redaction(*loggers: str) -> None:
    """Add a :class:`RedactingFilter` to every handler of the root logger, of ``loggers`` and
    to logging's last-resort handler (once each), so no log line shows a secret."""
    handlers = [*logging.getLogger().handlers]
    for name in loggers:
        handlers.extend(logging.getLogger(name).handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
