"""Reaching a database store (PostgreSQL): one quick first check, and its failures in words.

MLflow retries a database it cannot open ten times over about 100 s, logging each failure, and
then raises SQLAlchemy's error; Optuna raises it at once. Before either opens its engine, a
store on a database server gets one connection of its own here (no pool, a connect timeout):
a refusal or a timeout is retried as ``tracking.retries`` says (a server restarting), and a
wrong password or a missing database is reported at once, each in words that name the URI
(password masked) and what to check. SQLAlchemy and the driver load only when called.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from flywheel.core.errors import ConfigError, StoreUnreachableError
from flywheel.core.uris import mask_uri, redact

__all__ = ["DatabaseFailure", "PoolLimits", "check_database", "classify_failure"]

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PoolLimits:
    """Bounds of one engine's connection pool and of the first check (``tracking`` section).

    Attributes:
        pool_size: Connections the engine keeps open.
        max_overflow: Connections it may open beyond ``pool_size`` under load.
        connect_timeout_s: Longest wait for the server to accept a connection.
        retries: Retries of a refused or timed-out first connection.
        backoff_s: Pause before the second retry; it doubles for each one after.
    """

    pool_size: int = 5
    max_overflow: int = 5
    connect_timeout_s: float = 3.0
    retries: int = 2
    backoff_s: float = 1.0

    def engine_kwargs(self, uri: str, *, search_path: str | None = None) -> dict[str, object]:
        """SQLAlchemy ``create_engine`` arguments for a bounded pool on ``uri``; on PostgreSQL
        with a connect timeout and, if given, the schema ``search_path`` of every session."""
        kwargs: dict[str, object] = {"pool_size": self.pool_size,
                                     "max_overflow": self.max_overflow, "pool_pre_ping": True}
        if uri.lower().startswith(("postgresql", "postgres")):
            connect: dict[str, object] = {"connect_timeout": max(1, round(self.connect_timeout_s))}
            if search_path is not None:
                connect["options"] = f"-c search_path={search_path}"
            kwargs["connect_args"] = connect
        return kwargs


@dataclasses.dataclass(frozen=True)
class DatabaseFailure:
    """Why a connection failed: a short reason, what to check, whether waiting may help."""

    reason: str
    hint: str
    transient: bool


def classify_failure(exc: BaseException, uri: str, *, timeout_s: float) -> DatabaseFailure:
    """The failure a driver's error means, in words (the text is redacted)."""
    text = redact(str(getattr(exc, "orig", None) or exc))
    low = text.lower()
    user = _user(uri)
    if "password authentication failed" in low or "authentication failed" in low:
        return DatabaseFailure(
            f"password authentication failed for user {user!r}",
            "Check the password: the variable named as ${VAR} in the URI, or PGPASSWORD, "
            "must hold the role's password.", transient=False)
    if "no password supplied" in low or "fe_sendauth" in low:
        return DatabaseFailure(
            "the server asks for a password and none was given",
            "Put the password in an environment variable and name it in the URI "
            "(postgresql://USER:${PGPASSWORD_VAR}@HOST:PORT/DB), or export PGPASSWORD.",
            transient=False)
    if "does not exist" in low and "database" in low:
        return DatabaseFailure(
            f"the database {_database(uri)!r} does not exist",
            f"Create it (createdb -O {user} {_database(uri)}) or fix the database name at the "
            "end of the URI.", transient=False)
    if "role" in low and "does not exist" in low:
        return DatabaseFailure(
            f"the role {user!r} does not exist", "Fix the user name in the URI, or create the "
            "role on the server.", transient=False)
    if "timeout" in low or "timed out" in low:
        return DatabaseFailure(
            f"no connection within {timeout_s:g} s",
            "Check the host and port in the URI and that the server is up and reachable "
            "from here (firewall, VPN).", transient=True)
    if "refused" in low or "could not connect" in low or "is the server running" in low \
            or "starting up" in low or "shutting down" in low or "terminating" in low:
        return DatabaseFailure(
            "connection refused",
            "Check that the database server is running and that the host and port in the URI "
            "are right.", transient=True)
    if "could not translate host name" in low or "name or service not known" in low:
        return DatabaseFailure(
            f"unknown host {_host(uri)!r}", "Fix the host name in the URI.", transient=False)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return DatabaseFailure(first[:300], "Check the URI and that the server accepts this role.",
                           transient=False)


def check_database(uri: str, limits: PoolLimits, *, what: str,
                   sleep: Callable[[float], None] = time.sleep) -> None:
    """Open (and close) one connection to the database of ``uri``, as ``limits`` say.

    Args:
        uri: The expanded SQLAlchemy URL (password included; it is never shown).
        limits: The connect timeout and the retries of a refused or timed-out connection.
        what: The store's name in the error, such as ``"MLflow tracking store"``.
        sleep: Pauses between retries (tests pass a recorder).

    Raises:
        ConfigError: If the URL cannot be parsed or its driver is not installed.
        StoreUnreachableError: If no attempt connects, or the server refuses the login.
    """
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    try:
        engine = sqlalchemy.create_engine(
            uri, poolclass=NullPool,
            **{k: v for k, v in limits.engine_kwargs(uri).items() if k == "connect_args"})
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"the database URI {mask_uri(uri)} needs the driver {exc.name!r}, which is not "
            "installed; pip install flywheel[postgres].") from None
    except sqlalchemy.exc.ArgumentError as exc:
        raise ConfigError(f"the database URI {mask_uri(uri)} cannot be parsed "
                          f"({redact(str(exc))}); write it as "
                          "postgresql://USER:${PASSWORD_VAR}@HOST:PORT/DB.") from None
    pauses = [0.0 if k == 0 else float(limits.backoff_s * 2 ** (k - 1))
              for k in range(limits.retries)]
    try:
        for attempt in range(len(pauses) + 1):
            try:
                with engine.connect():
                    return
            except sqlalchemy.exc.DBAPIError as exc:
                failure = classify_failure(exc, uri, timeout_s=limits.connect_timeout_s)
            if not failure.transient or attempt == len(pauses):
                raise StoreUnreachableError(what, mask_uri(uri), failure.reason,
                                            hint=failure.hint, attempts=attempt + 1) from None
            if attempt == 0:
                _log.warning("The %s %s is not answering (%s); retrying %d more time(s) "
                             "(tracking.retries in flywheel.yaml).", what, mask_uri(uri),
                             failure.reason, len(pauses))
            sleep(pauses[attempt])
    finally:
        engine.dispose()


def _user(uri: str) -> str:
    from sqlalchemy.engine import make_url

    return str(make_url(uri).username or "(libpq's PGUSER or the login name)")


def _database(uri: str) -> str:
    from sqlalchemy.engine import make_url

    return str(make_url(uri).database or "")


def _host(uri: str) -> str:
    from sqlalchemy.engine import make_url

    return str(make_url(uri).host or "")
