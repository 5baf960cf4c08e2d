"""Keeping MLflow's logs, warnings, links and progress bars out of a CLI's terminal."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

from flywheel.core.uris import install_redaction

__all__ = ["quiet_mlflow", "quiet_warnings"]


def quiet_mlflow() -> None:
    """Keep MLflow from filling a CLI's terminal; run on a registry's first MLflow call.

    MLflow logs INFO lines (database migrations, retries) on its own handler, logs a full
    traceback at ERROR for every SQLite ``database is locked`` it then raises (we retry those,
    and report whatever is left as a RegistryError), prints run links with emoji to stdout when
    the tracking store is a server, and draws a progress bar on stderr for every download.
    """
    root = logging.getLogger("mlflow")
    if root.level in (logging.NOTSET, logging.INFO):
        root.setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    install_redaction("mlflow")
    # MLflow reads these at each call; setdefault leaves a user's own choice alone.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """Silence warnings MLflow and skops raise about choices flywheel made on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"(mlflow|skops)(\.|$)")
        warnings.filterwarnings("ignore", message=r".*[Ii]nferred schema contains integer")
        yield
