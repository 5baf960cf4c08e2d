"""A coordination database that is down, from the command line: exit 2, the URI named with its
password hidden, no traceback, nothing written to the workspace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flywheel.demo import free_port
from tests.conftest import make_project

pytestmark = pytest.mark.services


def test_flywheel_history_with_its_coordination_database_down_exits_2_saying_why(
        tmp_path: Path) -> None:
    make_project(tmp_path)
    spec_path = tmp_path / "flywheel.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["coordination"] = {"uri": f"postgresql://flywheel:${{PW_COORD}}@127.0.0.1:{free_port()}"
                                  "/flywheel", "connect_timeout_seconds": 2}
    spec_path.write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, "-m", "flywheel.cli.main", "history", "--config",
                           str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PW_COORD": "pw-s3cret-9"})
    assert done.returncode == 2, done.stderr
    said = done.stdout + done.stderr
    assert "coordination database postgresql://flywheel:***@127.0.0.1" in said
    assert "pw-s3cret-9" not in said
    assert "Traceback" not in said
    assert not (tmp_path / ".flywheel" / "audit.jsonl").exists()
