"""Find the binary a test needs; skip with what to install, or fail under CI."""
from __future__ import annotations

import os
import shutil

import pytest


def under_ci() -> bool:
    """Whether this run is CI (`CI=true`), where a missing service is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_binary(*names: str, install: str) -> str:
    """The path of the first of `names` on PATH.

    Args:
        names: Executable names to look for, in order of preference.
        install: What to install when none is found (shown in the skip or failure).

    Returns:
        The absolute path of the binary.

    Raises:
        pytest.fail.Exception: Under `CI=true` when none is found.
        pytest.skip.Exception: Elsewhere when none is found.
    """
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    message = f"needs {' or '.join(names)} on PATH; install {install}"
    if under_ci():
        pytest.fail(f"{message} (CI=true: a missing binary fails instead of skipping)")
    pytest.skip(message)


def require_postgres() -> None:
    """Skip (or fail under CI) unless PostgreSQL's server binaries can be found."""
    from flywheel.testing._postgres import INSTALL_HINT, find_postgres_bindir

    if find_postgres_bindir() is not None:
        return
    message = f"needs initdb and pg_ctl; install {INSTALL_HINT}"
    if under_ci():
        pytest.fail(f"{message} (CI=true: a missing binary fails instead of skipping)")
    pytest.skip(message)
