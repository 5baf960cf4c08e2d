"""A tracking store that cannot be reached or opened, as a user meets it on the command line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flywheel.cli.main import main
from flywheel.demo import free_port
from tests.conftest import CHURN


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tracking")
    shutil.copy(CHURN, root / "churn.parquet")
    assert main(["init", str(root / "churn.parquet"), "--target", "churn",
                 "--dir", str(root)]) == 0
    return root


def with_tracking_uri(project: Path, uri: str) -> None:
    spec = project / "flywheel.yaml"
    text = re.sub(r"(?m)^  tracking_uri: .*$", f"  tracking_uri: {uri!r}", spec.read_text())
    spec.write_text(text)


def closed_port() -> int:
    """A loopback port nothing listens on: bound for a moment, then released."""
    return free_port()


def cli(project: Path, *args: str, timeout: float = 120) -> tuple[int, str, str, float]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("MLFLOW_HTTP_REQUEST")}
    env["COLUMNS"] = "200"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "flywheel.cli.main", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=project)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


@pytest.mark.parametrize("command", [["models"], ["train", "--trials", "1"],
                                     ["serve", "--port", str(closed_port())]])
def test_an_unreachable_tracking_server_is_announced_and_fails_within_seconds_with_exit_2(
        project: Path, command: list[str]) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    with_tracking_uri(project, uri)
    code, _, err, elapsed = cli(project, *command)
    assert code == 2, err
    # MLflow's defaults took 254 s (models) and 150 s (train, serve); the rest is start-up.
    assert elapsed < 40, elapsed
    assert "is not answering (connection refused); retrying 2 more time(s)" in err
    assert f"The MLflow tracking store {uri} cannot be reached (connection refused) after 3 " \
           "attempt(s)" in err
    assert err.index("is not answering") < err.index("cannot be reached")
    assert "Traceback" not in err and "bug in flywheel" not in err


def test_the_tracking_section_sets_how_often_an_unreachable_server_is_retried(
        project: Path) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    with_tracking_uri(project, uri)
    spec = project / "flywheel.yaml"
    spec.write_text(spec.read_text().replace("  retries: 2", "  retries: 0"))
    try:
        code, _, err, _ = cli(project, "models")
    finally:
        spec.write_text(spec.read_text().replace("  retries: 0", "  retries: 2"))
    assert code == 2
    assert "not answering" not in err  # nothing to retry
    assert f"{uri} cannot be reached (connection refused). Check tracking.tracking_uri" in err


@pytest.mark.parametrize("store", ["afile/mlflow.db", "afile/deeper/mlflow.db"])
def test_an_sqlite_store_under_a_regular_file_is_a_clear_error_with_exit_2(
        project: Path, store: str) -> None:
    (project / "afile").write_text("not a folder")
    with_tracking_uri(project, f"sqlite:///{store}")
    for command in (["models"], ["train", "--trials", "1"]):
        code, _, err, _ = cli(project, *command)
        assert code == 2, err
        assert f"{project / 'afile'} is a regular file, not a folder" in err
        assert "FileExistsError" not in err and "bug in flywheel" not in err
