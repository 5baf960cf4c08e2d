"""What the pipelines need of a project: its spec, workspace, schema, data and registry.

The delegates (``train``, ``promote``, ``monitor``, the rollouts, the loop) take a
``ProjectContext``, never the ``Project`` facade, so the facade can call them without an import
cycle. ``Project`` is a ``ProjectContext`` with the user-facing methods on top.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Self

import pandas as pd

from flywheel.coordination import create_coordinator
from flywheel.core.spec import SPEC_FILE, ProjectSpec, load_spec
from flywheel.core.workspace import Workspace
from flywheel.data import DataSchema, load_schema, load_table
from flywheel.featurestore import join_spine
from flywheel.pipelines._lazy import LazyModule

if TYPE_CHECKING:
    from flywheel import registry as _registry
    from flywheel.registry import MlflowRegistry
else:
    _registry = LazyModule("flywheel.registry")  # MLflow: seconds to import

__all__ = ["ProjectContext"]


class ProjectContext:
    """A project's spec and workspace, its schema read on first use, and its registry.

    Immutable: ``spec`` and ``workspace`` cannot be reassigned; a run with other settings
    builds another context (``with_spec``).

    Args:
        spec: The project spec (its ``root`` is the project folder).
        schema: The schema, when the caller holds it already (else read from
            ``schema.yaml`` on first use).
    """

    __slots__ = ("_registry", "_registry_lock", "_schema", "_spec", "_workspace")

    def __init__(self, spec: ProjectSpec, *, schema: DataSchema | None = None) -> None:
        self._spec = spec
        self._workspace = Workspace(spec.root, coordinator=create_coordinator(spec))
        self._schema = schema
        self._registry: MlflowRegistry | None = None
        self._registry_lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path = SPEC_FILE) -> Self:
        """Open the project whose flywheel.yaml is at ``path`` (or in the folder ``path``)."""
        return cls(load_spec(path))

    @property
    def spec(self) -> ProjectSpec:
        return self._spec

    @property
    def workspace(self) -> Workspace:
        return self._workspace

    @property
    def schema(self) -> DataSchema:
        """The project's schema (``schema.yaml``), read once."""
        if self._schema is None:
            self._schema = load_schema(self._spec.schema_path)
        return self._schema

    def with_spec(self, spec: ProjectSpec) -> ProjectContext:
        """A context for the same project folder and schema with ``spec`` instead (this one
        when ``spec`` is its own)."""
        if spec is self._spec:
            return self
        return ProjectContext(spec, schema=self._schema)

    def registry(self) -> MlflowRegistry:
        """The project's MLflow tracking store and model registry (built once)."""
        with self._registry_lock:
            if self._registry is None:
                self._registry = _registry.MlflowRegistry.for_project(self._spec,
                                                                      self._workspace)
            return self._registry

    def load_data(self, path: str | Path | None = None) -> pd.DataFrame:
        """Read ``path``, or the spec's training data when omitted; with ``data.spine``, a
        spine gets its feature views joined as of each row's event time."""
        target = Path(path) if path is not None else self._spec.data_path
        data = self._spec.data
        frame = load_table(target, fmt=data.format if path is None else "auto",
                           encoding=data.encoding, delimiter=data.delimiter)
        if data.spine is not None:
            frame = join_spine(self._spec, self._workspace, frame)
        return frame
