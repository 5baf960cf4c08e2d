"""The workspace ``.flywheel/`` that flywheel owns beside a project's flywheel.yaml.

Created on first use. Writers take a named lock of the project's coordinator
(:mod:`flywheel.core.coordination`): a second command that would write the same state waits up
to a timeout, then refuses with a message naming the holder. Files are written atomically
(:mod:`flywheel.core.atomic`), so a crash never leaves one half-written.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from flywheel.core.atomic import atomic_write_bytes, atomic_write_text, fsync_dir
from flywheel.core.coordination import Coordinator, FileCoordinator
from flywheel.core.errors import WorkspaceError

__all__ = ["DEFAULT_LOCK_TIMEOUT", "WORKSPACE_DIR", "Workspace", "atomic_write_bytes",
           "atomic_write_text", "fsync_dir"]

WORKSPACE_DIR = ".flywheel"
DEFAULT_LOCK_TIMEOUT = 30.0


class Workspace:
    """Paths inside ``.flywheel/`` and the lock that serializes writers.

    Args:
        project_root: The folder holding flywheel.yaml.
    """

    def __init__(self, project_root: str | Path, *,
                 coordinator: Coordinator | None = None) -> None:
        self.project_root = Path(project_root).resolve()
        self.root = self.project_root / WORKSPACE_DIR
        self.coordinator: Coordinator = coordinator or FileCoordinator(self.root)
        """Where locks, the controller's lease and the loop's state live (default: files
        in ``.flywheel/``)."""

    @property
    def stale_holders(self) -> dict[str, str]:
        """Per lock name, the holder a killed process left behind when this one took the lock
        (the caller says what was recovered)."""
        return self.coordinator.stale_holders

    # Layout. At scale the database paths become server URIs; see the spec.
    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def optuna_db(self) -> Path:
        return self.root / "optuna.db"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def profiles(self) -> Path:
        return self.root / "profiles"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.jsonl"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    def ensure(self) -> Workspace:
        """Create the workspace folders if they are missing.

        Raises:
            WorkspaceError: If ``.flywheel`` exists but is not a folder, or cannot be written.
        """
        if self.root.exists() and not self.root.is_dir():
            raise WorkspaceError(
                f"{self.root} exists but is not a folder; move it away so flywheel can create "
                "its workspace there."
            )
        try:
            for folder in (self.root, self.artifacts, self.predictions, self.profiles, self.locks):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(
                f"cannot create the workspace at {self.root}: {exc.strerror}. "
                "Check that the project folder is writable."
            ) from exc
        return self

    def lock(self, name: str = "state", *, timeout: float = DEFAULT_LOCK_TIMEOUT,
             command: str | None = None) -> AbstractContextManager[None]:
        """Hold the named lock of the project's coordinator for the duration of the block.

        Waits up to ``timeout`` seconds for another holder, then raises. Embedded, the lock
        is a file in ``.flywheel/locks``; with shared coordination, a PostgreSQL lock every
        host running the same spec takes.

        Raises:
            WorkspaceBusyError: If the lock is still held after ``timeout`` seconds.
            CoordinationError: If the shared coordination store cannot be reached.
        """
        if not self.coordinator.shared:
            self.ensure()
        return self.coordinator.lock(name, timeout=timeout, command=command)
