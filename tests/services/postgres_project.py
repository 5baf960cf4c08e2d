"""Projects whose tracking lives on PostgreSQL (directly or behind an mlflow server), run as a
user runs them: the real `flywheel` CLI in a subprocess, the password only in the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import make_project

PASSWORD_VAR = "FW_TEST_PG_PASSWORD"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Ran:
    """One CLI run: exit code, what it printed, how long it took."""

    code: int
    out: str
    err: str
    seconds: float
    args: tuple[str, ...] = field(default=())

    @property
    def text(self) -> str:
        return self.out + self.err


def pg_uri(cluster: Any, *, database: str | None = None, password: str | None = None) -> str:
    """The cluster's URL with the password named as ``${FW_TEST_PG_PASSWORD}`` (or ``password``
    written out, for the tests of a literal one)."""
    secret = "${" + PASSWORD_VAR + "}" if password is None else password
    return (f"postgresql://{cluster.user}:{secret}@{cluster.host}:{cluster.port}/"
            f"{database or cluster.database}")


def set_tracking(root: Path, **tracking: Any) -> None:
    """Replace keys of the ``tracking:`` section of ``root``'s flywheel.yaml."""
    spec = root / "flywheel.yaml"
    raw = yaml.safe_load(spec.read_text())
    raw["tracking"] = {**raw.get("tracking", {}), **tracking}
    spec.write_text(yaml.safe_dump(raw))


def tracked_project(root: Path, tracking: dict[str, Any], **training: Any) -> Path:
    """A churn project at ``root`` with ``tracking`` as its only change from the embedded one."""
    make_project(root, training=training or None)
    set_tracking(root, **tracking)
    return root


def run_cli(root: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 600) -> Ran:
    """`flywheel ARGS` in ``root`` with ``env`` added to this process's environment."""
    full = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO), **(env or {})}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "flywheel.cli.main", *args], cwd=root,
                          env=full, capture_output=True, text=True, timeout=timeout)
    return Ran(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started, args)


def no_local_stores(root: Path) -> list[str]:
    """The files of ``.flywheel/`` a shared-back-end project must not keep."""
    return [name for name in ("optuna.db", "mlflow.db") if (root / ".flywheel" / name).exists()]
