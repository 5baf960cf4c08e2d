from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from flywheel.core.errors import WorkspaceBusyError, WorkspaceError
from flywheel.core.workspace import Workspace, atomic_write_text


def test_workspace_is_created_on_first_use(tmp_path: Path) -> None:
    ws = Workspace(tmp_path).ensure()
    assert ws.root == tmp_path.resolve() / ".flywheel"
    assert ws.artifacts.is_dir() and ws.profiles.is_dir() and ws.predictions.is_dir()


def test_workspace_refuses_a_file_in_its_place(tmp_path: Path) -> None:
    (tmp_path / ".flywheel").write_text("not a folder")
    with pytest.raises(WorkspaceError, match="not a folder"):
        Workspace(tmp_path).ensure()


def test_second_writer_waits_then_refuses_naming_the_holder(tmp_path: Path) -> None:
    ws = Workspace(tmp_path).ensure()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from flywheel.core.workspace import Workspace\n"
        f"ws = Workspace({str(tmp_path)!r})\n"
        "with ws.lock('state', command='flywheel train'):\n"
        "    print('locked', flush=True); time.sleep(30)\n"
    )], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(WorkspaceBusyError) as info, ws.lock("state", timeout=0.5):
            pass
        assert time.monotonic() - started >= 0.5
        assert "flywheel train" in str(info.value) and f"pid {holder.pid}" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    with ws.lock("state", timeout=5):  # released by the holder's death
        pass


def test_lock_is_released_after_an_error_in_the_block(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    with pytest.raises(RuntimeError), ws.lock("state"):
        raise RuntimeError("boom")
    with ws.lock("state", timeout=0.1):
        pass


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    atomic_write_text(path, "old")

    def crash(src: str, dst: object) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr("flywheel.core.atomic.os.replace", crash)
    with pytest.raises(OSError):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left behind
