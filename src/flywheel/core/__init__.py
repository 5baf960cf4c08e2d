"""Shared foundations: errors, the project spec, the workspace."""

from __future__ import annotations

from flywheel.core.errors import (
    ConfigError,
    DataError,
    DataValidationError,
    FlywheelError,
    TrainingError,
    WorkspaceBusyError,
    WorkspaceError,
)
from flywheel.core.spec import ProjectSpec, load_spec
from flywheel.core.workspace import Workspace, atomic_write_text

__all__ = [
    "ConfigError",
    "DataError",
    "DataValidationError",
    "FlywheelError",
    "ProjectSpec",
    "TrainingError",
    "Workspace",
    "WorkspaceBusyError",
    "WorkspaceError",
    "atomic_write_text",
    "load_spec",
]
