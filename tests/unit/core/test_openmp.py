"""OpenMP's wait policy: left alone for training, sleeping waits for processes that serve."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flywheel.core.openmp import WAIT_POLICY, share_cores


def _policy_after(code: str, **env: str) -> list[str]:
    """What ``code`` prints, then the wait policy its process ends with."""
    clean = {k: v for k, v in os.environ.items() if k != WAIT_POLICY}
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport os\n"
                          f"print(os.environ.get({WAIT_POLICY!r}, 'unset'))"],
                         env={**clean, **env}, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()


def test_importing_flywheel_and_its_training_leaves_openmps_default_wait_policy() -> None:
    assert _policy_after("from flywheel import Project\nimport flywheel.training") == ["unset"]


def test_a_serving_process_lets_openmp_threads_sleep_and_its_children_inherit_it() -> None:
    code = ("from flywheel.core.openmp import share_cores\nshare_cores()\nimport subprocess, sys\n"
            "print(subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"OMP_WAIT_"
            "POLICY\"])'], capture_output=True, text=True).stdout.strip())")
    assert _policy_after(code) == ["PASSIVE", "PASSIVE"]  # the child's, then its own


def test_a_wait_policy_the_user_exported_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WAIT_POLICY, "ACTIVE")
    share_cores()
    assert os.environ[WAIT_POLICY] == "ACTIVE"
