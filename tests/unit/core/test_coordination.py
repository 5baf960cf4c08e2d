"""The embedded coordinator: lock files and state files in .flywheel/, a leader lease as a
lock file that a second process cannot take while the first holds it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from flywheel.core.coordination import FileCoordinator
from flywheel.core.workspace import Workspace


def test_the_workspace_coordinates_through_files_in_its_folder_by_default(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    assert isinstance(workspace.coordinator, FileCoordinator)
    assert workspace.coordinator.shared is False
    with workspace.lock("registry", timeout=1, command="flywheel promote 2"):
        assert (tmp_path / ".flywheel" / "locks" / "registry.holder").exists()
    assert not (tmp_path / ".flywheel" / "locks" / "registry.holder").exists()


def test_a_second_process_cannot_lead_while_the_first_holds_the_lease(tmp_path: Path) -> None:
    lease = FileCoordinator(tmp_path).lease("rollout-controller")
    assert lease.acquire() and lease.acquire()  # taking it again while held: still the leader
    code = ("import sys\nfrom pathlib import Path\n"
            "from flywheel.core.coordination import FileCoordinator\n"
            f"lease = FileCoordinator(Path({str(tmp_path)!r})).lease('rollout-controller')\n"
            "print(lease.acquire(), lease.holder())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout
    assert other.startswith("False `")  # not the leader; names the one who is
    lease.step_down()
    assert not lease.held
    freed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout
    assert freed.startswith("True")


def test_state_documents_are_files_in_the_workspace(tmp_path: Path) -> None:
    coordinator = FileCoordinator(tmp_path / ".flywheel")
    assert coordinator.read_state("loop/state.json") is None
    coordinator.write_state("loop/state.json", "{}")
    assert (tmp_path / ".flywheel" / "loop" / "state.json").read_text() == "{}"
