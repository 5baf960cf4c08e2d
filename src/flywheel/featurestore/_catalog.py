"""The feature views of a project, checked against their sources, and their versions.

A view's version is numbered: its digest (the definition in flywheel.yaml and its source's
fingerprint, the names and types of the columns it reads) is looked up in
``.flywheel/features/versions.json``; a digest not seen before becomes the next number. New
rows in a source do not make a new version (the training set's own fingerprint covers the
data); editing the view, or a column of the source changing type, does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel.core.errors import ConfigError, FeatureStoreError
from flywheel.core.spec import FeatureViewSpec, ProjectSpec
from flywheel.core.workspace import Workspace, atomic_write_text
from flywheel.featurestore._source import (
    check_columns,
    connect,
    key_kind,
    source_sql,
    view_types,
)

if TYPE_CHECKING:
    import duckdb

__all__ = ["FeatureCatalog", "ViewVersion"]

VERSIONS_FILE = "versions.json"


@dataclasses.dataclass(frozen=True)
class ViewVersion:
    """One view as its source reads now, with its version number."""

    spec: FeatureViewSpec
    version: int
    digest: str
    types: dict[str, str]
    """DuckDB type of every column the view reads."""
    sql: str
    """The FROM clause reading the source."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key_kinds(self) -> dict[str, str]:
        """integer or text, per entity key."""
        return {k: key_kind(self.types[k]) or "text" for k in self.spec.entities}

    def pin(self) -> dict[str, Any]:
        """What a model records of the view it trained with."""
        return {"version": self.version, "digest": self.digest,
                "entities": self.spec.entities, "features": self.spec.features,
                "types": {f: self.types[f] for f in self.spec.features},
                "key_kinds": self.key_kinds, "ttl": self.spec.ttl}


class FeatureCatalog:
    """A project's feature views and their versions.

    Args:
        spec: The project spec (its ``feature_store`` section).
        workspace: Where the version numbers are kept.
    """

    def __init__(self, spec: ProjectSpec, workspace: Workspace) -> None:
        self.spec = spec
        self.store = spec.feature_store
        self.workspace = workspace
        self.folder = workspace.root / "features"
        self._con: duckdb.DuckDBPyConnection | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The catalog's DuckDB connection (opened on first use)."""
        if self._con is None:
            self._con = connect(self.store.memory_limit_mb, self.folder / "duckdb.tmp")
        return self._con

    def names(self) -> list[str]:
        return [view.name for view in self.store.views]

    def view_spec(self, name: str) -> FeatureViewSpec:
        """The definition of view ``name``.

        Raises:
            ConfigError: If no view has that name.
        """
        found = self.store.view(name)
        if found is None:
            known = ", ".join(self.names()) or "none are defined"
            raise ConfigError(f"no feature view {name!r} in feature_store.views ({known}); "
                              "`flywheel features list` shows them.")
        return found

    def resolve(self, name: str, *, register: bool = True) -> ViewVersion:
        """View ``name`` as its source reads now, numbered (a new digest is registered as the
        next version unless ``register`` is false, when it gets number 0).

        Raises:
            ConfigError: If no view has that name.
            FeatureStoreError: If the source cannot be read or lacks a declared column.
        """
        view = self.view_spec(name)
        sql = source_sql(view, self.spec.root)
        types = view_types(self.con, sql, f"view {name!r}: its source")
        check_columns(view, types)
        digest = _digest(view, types)
        version = self._number(name, digest, view, types) if register else \
            self.known_version(name, digest) or 0
        return ViewVersion(spec=view, version=version, digest=digest,
                           types={c: types[c] for c in view.columns}, sql=sql)

    def history(self, name: str) -> list[dict[str, Any]]:
        """The registered versions of ``name``, oldest first."""
        entries: list[dict[str, Any]] = self._read().get(name, [])
        return entries

    def known_version(self, name: str, digest: str) -> int | None:
        """The number registered for ``digest`` of view ``name``, if any."""
        return next((int(e["version"]) for e in self.history(name) if e["digest"] == digest),
                    None)

    def _number(self, name: str, digest: str, view: FeatureViewSpec,
                types: dict[str, str]) -> int:
        known = self.known_version(name, digest)
        if known is not None:
            return known
        with self.workspace.lock("features", command="flywheel features (version)"):
            versions = self._read()
            entries = versions.setdefault(name, [])
            for entry in entries:
                if entry["digest"] == digest:
                    return int(entry["version"])
            number = 1 + max((int(e["version"]) for e in entries), default=0)
            entries.append({"version": number, "digest": digest,
                            "definition": view.model_dump(mode="json"),
                            "types": {c: types[c] for c in view.columns},
                            "registered": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.folder / VERSIONS_FILE, json.dumps(versions, indent=1))
        return number

    def _read(self) -> dict[str, list[dict[str, Any]]]:
        path = self.folder / VERSIONS_FILE
        if not path.is_file():
            return {}
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FeatureStoreError(f"{path} cannot be read as the feature views' versions "
                                    f"({exc}); restore it or move it away (versions are then "
                                    "numbered anew).") from exc
        return loaded if isinstance(loaded, dict) else {}

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def _digest(view: FeatureViewSpec, types: dict[str, str]) -> str:
    definition = view.model_dump(mode="json")
    source = {c: types[c] for c in view.columns}
    text = json.dumps({"definition": definition, "source": source}, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def online_path(workspace: Workspace) -> Path:
    """The default SQLite online store."""
    return workspace.root / "features" / "online.db"
