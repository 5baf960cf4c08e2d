"""Where the Optuna study lives (``training.search.storage``), and opening it.

``auto`` keeps the study in ``.flywheel/optuna.db`` for an embedded project and in the tracking
database when ``tracking.tracking_uri`` is ``postgresql://``, so search workers on other hosts
running the same flywheel.yaml join the same study and the project keeps no ``optuna.db``. An
``http://`` tracking server exposes no database to share: ``auto`` then uses the coordination
database (``coordination.uri``) when that is PostgreSQL, and stays local otherwise (or name an
RDB URL). ``journal:PATH`` is Optuna's journal file.

On PostgreSQL the study's tables go to their own schema, ``flywheel_optuna``: MLflow and
Optuna both keep their migration state in a table named ``alembic_version``, which one schema
cannot hold twice. A shared study's trials carry a heartbeat, so a worker killed on another
host has its running trials failed once the heartbeat stops, instead of by whoever starts next
(which on a shared study may be a live worker's trial).
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from flywheel.core.database import PoolLimits, check_database, classify_failure
from flywheel.core.errors import StoreUnreachableError
from flywheel.core.uris import expand_env, is_database_uri, mask_uri

if TYPE_CHECKING:
    import optuna

    from flywheel.core.spec import ProjectSpec

__all__ = ["SCHEMA", "is_shared_storage", "open_storage", "study_storage"]

SCHEMA = "flywheel_optuna"
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 60
_JOURNAL = "journal:"
_SQLITE = "sqlite:///"
_WHAT = "Optuna study storage"
# One storage (one engine, one pool) per URL and process: what bounds its connections.
_OPEN: dict[str, optuna.storages.BaseStorage] = {}
_OPEN_LOCK = threading.Lock()


def study_storage(spec: ProjectSpec, optuna_db: Path) -> str:
    """The study's storage URL as configured (``${VAR}`` still unexpanded).

    Args:
        spec: The project spec; relative paths resolve against its folder.
        optuna_db: The workspace's ``optuna.db``, used by ``auto`` for an embedded project.
    """
    chosen = spec.training.search.storage
    if chosen == "auto":
        for shared in (spec.tracking.tracking_uri, spec.coordination.uri):
            if shared is not None and is_database_uri(shared):
                return shared
        return f"{_SQLITE}{optuna_db}"
    if chosen.startswith(_JOURNAL):
        return f"{_JOURNAL}{spec.resolve(chosen.removeprefix(_JOURNAL))}"
    if chosen.startswith(_SQLITE):
        path = chosen.removeprefix(_SQLITE)
        if path and path != ":memory:" and not Path(path).is_absolute():
            return f"{_SQLITE}{spec.resolve(path)}"
    return chosen


def is_shared_storage(url: str) -> bool:
    """Whether processes on other hosts may run trials of a study in ``url`` (a database
    server), so no process may take a running trial for a dead one without its heartbeat."""
    return is_database_uri(url)


def open_storage(url: str, spec: ProjectSpec, *, joining: bool = False
                 ) -> optuna.storages.BaseStorage:
    """The Optuna storage of ``url`` (from :func:`study_storage`), one per URL and process.

    A database URL is expanded from the environment here, checked with one connection (a
    refusal, a wrong password and a missing database are each one clear error) and opened
    with the pool ``tracking.pool_size`` and ``tracking.max_overflow`` allow.

    ``joining``: a search worker opening a storage that the process which started the search
    has already opened (so created and checked): the table creation and Optuna's schema
    check (an Alembic import and several queries, about half a second) are skipped.

    Raises:
        ConfigError: If the URL names an environment variable that is not set.
        StoreUnreachableError: If the database refuses or does not answer.
    """
    with _OPEN_LOCK:
        if url not in _OPEN:
            _OPEN[url] = _open(url, spec, joining)
        return _OPEN[url]


def _open(url: str, spec: ProjectSpec, joining: bool) -> optuna.storages.BaseStorage:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url.startswith(_JOURNAL):
        path = Path(url.removeprefix(_JOURNAL))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}},
                                          skip_compatibility_check=joining,
                                          skip_table_creation=joining)
    expanded = expand_env(url, setting=_setting(url, spec))
    if not is_database_uri(expanded):
        return optuna.storages.RDBStorage(expanded, skip_compatibility_check=joining,
                                          skip_table_creation=joining)
    tracking = spec.tracking
    limits = PoolLimits(pool_size=tracking.pool_size, max_overflow=tracking.max_overflow,
                        connect_timeout_s=tracking.connect_timeout_seconds,
                        retries=tracking.retries, backoff_s=tracking.backoff_seconds)
    check_database(expanded, limits, what=_WHAT)
    postgres = expanded.lower().startswith(("postgresql", "postgres"))
    if postgres and not joining:
        _create_schema(expanded, limits)
    kwargs = limits.engine_kwargs(expanded, search_path=SCHEMA if postgres else None)
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(expanded, engine_kwargs=kwargs,
                                              heartbeat_interval=HEARTBEAT_SECONDS,
                                              grace_period=GRACE_SECONDS,
                                              skip_compatibility_check=joining,
                                              skip_table_creation=joining)
    except Exception as exc:  # SQLAlchemy's errors, raised while creating the tables
        failure = classify_failure(exc, expanded, timeout_s=limits.connect_timeout_s)
        raise StoreUnreachableError(_WHAT, mask_uri(expanded), failure.reason,
                                    hint=failure.hint) from None


def _setting(url: str, spec: ProjectSpec) -> str:
    """The spec key that named ``url``, for its errors."""
    if spec.training.search.storage != "auto":
        return "training.search.storage"
    return "tracking.tracking_uri" if url == spec.tracking.tracking_uri else "coordination.uri"


def _create_schema(uri: str, limits: PoolLimits) -> None:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(uri, poolclass=NullPool,
                                      connect_args={"connect_timeout": max(
                                          1, round(limits.connect_timeout_s))})
    try:
        with engine.connect() as conn:
            exists = conn.execute(sqlalchemy.text(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
                {"s": SCHEMA}).first()
            if exists is None:
                try:
                    conn.execute(sqlalchemy.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
                    conn.commit()
                except sqlalchemy.exc.IntegrityError:
                    conn.rollback()  # another worker created it at the same moment
    except sqlalchemy.exc.ProgrammingError:
        raise StoreUnreachableError(
            _WHAT, mask_uri(uri), f"the role may not create the schema {SCHEMA}",
            hint=f"Have the database owner run CREATE SCHEMA {SCHEMA} AUTHORIZATION "
                 "<your role>, or name another database in training.search.storage."
        ) from None
    finally:
        engine.dispose()
