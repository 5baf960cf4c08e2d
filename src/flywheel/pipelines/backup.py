"""A consistent backup of an embedded project, taken while it serves, and its restore elsewhere.

``backup_project`` archives flywheel.yaml, schema.yaml and the workspace ``.flywheel/``: every
SQLite database (the MLflow store, the Optuna study, the feature store's online tables) through
SQLite's online backup API, so a writer never leaves a half-copied page; the MLflow store and
the audit log together under the workspace ``registry`` lock, so no alias change falls between
them; then the artifacts, the loop state and the prediction log. Artifacts are written before
the store records them, so every artifact the copied store names is copied. The log's spool
is copied before its partitions: a spool file the converter deletes meanwhile has its Parquet
file written first, and readers skip rows a partition already holds. Locks, temporary files
and SQLite's journals are left out. The archive (tar, ``MANIFEST.json`` last, see
``_backup_manifest``) is written under a temporary name and renamed when complete, so a backup
killed midway leaves no file with the name asked for.

``restore_backup`` checks the whole archive against its manifest before anything reaches the
target folder, then rewrites the absolute artifact locations MLflow keeps in its store (and any
other text naming the old folder in the restored SQLite databases) to the new folder.

A project on shared back ends (tracking on PostgreSQL or a tracking server, coordination on
PostgreSQL, artifacts in an object store) is refused: those stores belong to their servers and
are backed up with their own tools (``pg_dump``, the bucket's versioning); a copy of only the
local parts would restore to a project whose registry and audit log disagree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from flywheel.core.crashpoints import crash_point
from flywheel.core.errors import BackupError
from flywheel.core.spec import SPEC_FILE
from flywheel.core.uris import redact
from flywheel.core.workspace import WORKSPACE_DIR, fsync_dir
from flywheel.pipelines._backup_manifest import (
    MANIFEST_NAME,
    BackupManifest,
    ManifestFile,
    sha256_of,
)
from flywheel.predlog import SPOOL_DIR, is_local, resolve_location

if TYPE_CHECKING:
    from flywheel.pipelines._context import ProjectContext

__all__ = ["BackupManifest", "RestoreResult", "backup_project", "restore_backup"]

_SQLITE_HEADER = b"SQLite format 3\x00"
_SKIPPED_NAMES = ("-wal", "-shm", "-journal", ".lock", ".tmp")
_SKIPPED_DIRS = frozenset({"locks"})


@dataclasses.dataclass(frozen=True)
class RestoreResult:
    """A restored project: its folder and the manifest it was checked against."""

    root: Path
    manifest: BackupManifest


def backup_project(project: ProjectContext, output: str | Path) -> BackupManifest:
    """Archive the project into ``output`` (a tar file), consistent while the server runs.

    Raises:
        BackupError: If the project keeps its registry, audit log or artifacts on a shared
            back end, or ``output`` lies inside the workspace.
        WorkspaceBusyError: If an alias change holds the registry lock past its timeout.
    """
    spec, root = project.spec, project.spec.root.resolve()
    _refuse_shared(project)
    target = Path(output).expanduser().resolve()
    workspace = project.workspace.root
    if target.is_relative_to(workspace):
        raise BackupError(f"The backup file {target} is inside the workspace {workspace} it "
                          "backs up; write it outside .flywheel/ (e.g. -o ../backup.tar).")
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_partials(target)
    excluded: list[str] = []
    log = resolve_location(spec.monitoring.log_location, root)
    log_path = Path(log) if is_local(log) else None
    if log_path is None or not log_path.resolve().is_relative_to(root):
        excluded.append(f"the prediction log at {log} (outside the project folder; back it up "
                        "with that store's own tools)")
        log_path = None
    excluded.extend(_stores_elsewhere(project))
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.staging-",
                                     dir=target.parent) as staging_dir:
        staging = Path(staging_dir)
        files: list[ManifestFile] = []
        for name in (SPEC_FILE, spec.schema_path.name):
            source = root / name
            copied = _copy(source, staging, root) if source.is_file() else None
            if copied is not None:
                files.append(copied)
        with project.workspace.lock("registry", command="flywheel backup"):
            if project.workspace.mlflow_db.is_file():
                files.append(_snapshot_sqlite(project.workspace.mlflow_db, staging, root))
            if project.workspace.audit_log.is_file():
                files.append(_copy_audit_log(project.workspace.audit_log, staging, root))
        taken = {f.path for f in files}
        log_rel = log_path.resolve().relative_to(root).as_posix() if log_path else None
        for path in _workspace_files(workspace, log_path):
            rel = path.relative_to(root).as_posix()
            if rel in taken:
                continue
            entry = (_snapshot_sqlite(path, staging, root) if _is_sqlite(path)
                     else _copy(path, staging, root, vanish_ok=bool(
                         log_rel and rel.startswith(log_rel + "/"))))
            if entry is not None:
                files.append(entry)
        manifest = BackupManifest(source_root=str(root), files=tuple(files),
                                  excluded=tuple(excluded),
                                  created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        _write_archive(staging, manifest, target)
    return manifest


def restore_backup(archive: str | Path, directory: str | Path) -> RestoreResult:
    """Restore the backup ``archive`` into ``directory`` (absent or empty).

    Raises:
        BackupError: If the archive is not a complete, intact flywheel backup, or
            ``directory`` holds files already.
    """
    source = Path(archive).expanduser().resolve()
    target = Path(directory).expanduser().resolve()
    if not source.is_file():
        raise BackupError(f"No backup file at {source}; give the file `flywheel backup -o` "
                          "wrote.")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} is not an empty folder; restore into a new or empty "
                          "folder so nothing there is overwritten.")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.restore-",
                                     dir=target.parent) as scratch:
        unpacked = Path(scratch) / "project"
        manifest = _unpack(source, unpacked)
        manifest.verify(unpacked, archive=str(source))
        for path in unpacked.rglob("*"):
            if path.is_file() and _is_sqlite(path):
                _rewrite_paths(path, Path(manifest.source_root), target)
        (unpacked / MANIFEST_NAME).unlink(missing_ok=True)
        (unpacked / WORKSPACE_DIR / "locks").mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.rmdir()
        os.replace(unpacked, target)
        fsync_dir(target.parent)
    return RestoreResult(root=target, manifest=manifest)


def _refuse_shared(project: ProjectContext) -> None:
    spec = project.spec
    shared: list[str] = []
    uri = spec.tracking.tracking_uri
    if uri and not uri.startswith("sqlite:"):
        shared.append("the MLflow tracking store (tracking.tracking_uri)")
    if spec.coordination.uri:
        shared.append("the coordination database with the audit log and loop state "
                      "(coordination.uri)")
    location = spec.tracking.artifact_location
    if location and "://" in location and not location.startswith("file:"):
        shared.append(f"the artifacts at {location} (tracking.artifact_location)")
    if shared:
        raise BackupError(
            "flywheel backup copies an embedded project only, and this one keeps "
            + "; ".join(shared) + " on a shared back end. Back those up with their own tools "
            "(pg_dump for PostgreSQL, the bucket's versioning or replication for object "
            "stores, the tracking server's backend store); a copy of only the local parts "
            "would restore a registry and audit log that disagree.")


def _stores_elsewhere(project: ProjectContext) -> list[str]:
    """What the spec keeps outside the workspace (and so outside the backup), one line each."""
    spec, workspace = project.spec, project.workspace.root
    elsewhere: list[str] = []
    online = spec.feature_store.online
    if online != "sqlite" and (not online.startswith("sqlite:///") or not spec.resolve(
            online.removeprefix("sqlite:///")).resolve().is_relative_to(workspace)):
        elsewhere.append(f"the feature store's online store {online} (outside .flywheel/; "
                         "`flywheel features materialize` rebuilds it)")
    storage = spec.training.search.storage
    if storage != "auto" and (not storage.startswith("journal:") or not spec.resolve(
            storage.removeprefix("journal:")).resolve().is_relative_to(workspace)):
        elsewhere.append(f"the Optuna study at {redact(storage)} (outside .flywheel/)")
    return elsewhere


def _workspace_files(workspace: Path, log: Path | None) -> Iterator[Path]:
    """The workspace's files to archive; the log's spool before its partitions."""
    def keep(path: Path) -> bool:
        rel = path.relative_to(workspace)
        return (path.is_file() and rel.parts[0] not in _SKIPPED_DIRS
                and not path.name.startswith(".") and not path.name.endswith(_SKIPPED_NAMES))

    spool = log / SPOOL_DIR if log else None
    if spool is not None and spool.is_dir():
        yield from sorted(p for p in spool.rglob("*") if keep(p))
    for path in sorted(workspace.rglob("*")):
        if (spool is None or not path.is_relative_to(spool)) and keep(path):
            yield path


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    except OSError:
        return False


def _snapshot_sqlite(path: Path, staging: Path, root: Path) -> ManifestFile:
    rel = path.relative_to(root).as_posix()
    destination = staging / rel
    destination.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)
    copy = sqlite3.connect(destination)
    try:
        source.backup(copy)  # one step: a consistent snapshot, writers wait at most a moment
    finally:
        copy.close()
        source.close()
    return ManifestFile(rel, destination.stat().st_size, sha256_of(destination))


def _copy_audit_log(path: Path, staging: Path, root: Path) -> ManifestFile:
    """The audit log up to its last complete line (an append in flight is not half copied)."""
    rel = path.relative_to(root).as_posix()
    data = path.read_bytes()
    data = data[: data.rfind(b"\n") + 1]
    destination = staging / rel
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(data)
    return ManifestFile(rel, len(data), sha256_of(destination))


def _copy(path: Path, staging: Path, root: Path, *, vanish_ok: bool = False
          ) -> ManifestFile | None:
    """Copy one file; a prediction-log file compacted or converted away meanwhile is skipped
    (its rows are in the file that replaced it, copied after it)."""
    rel = path.relative_to(root).as_posix()
    destination = staging / rel
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(path, destination)
    except FileNotFoundError:
        if not vanish_ok:
            raise
        destination.unlink(missing_ok=True)
        return None
    return ManifestFile(rel, destination.stat().st_size, sha256_of(destination))


def _write_archive(staging: Path, manifest: BackupManifest, target: Path) -> None:
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    (staging / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    try:
        with tarfile.open(partial, "w") as tar:
            half = len(manifest.files) // 2
            for index, entry in enumerate(manifest.files):
                if index == half:
                    crash_point("backup.archive_half_written")
                tar.add(staging / entry.path, arcname=entry.path, recursive=False)
            tar.add(staging / MANIFEST_NAME, arcname=MANIFEST_NAME, recursive=False)
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        crash_point("backup.archive_written")
        os.replace(partial, target)
        fsync_dir(target.parent)
    finally:
        partial.unlink(missing_ok=True)


def _remove_dead_partials(target: Path) -> None:
    """Delete what a killed backup to the same file left (``.NAME.partial-PID``)."""
    for leftover in target.parent.glob(f".{target.name}.partial-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unpack(archive: Path, folder: Path) -> BackupManifest:
    """Extract ``archive`` into ``folder`` and return its manifest.

    Raises:
        BackupError: If the archive cannot be read to its end or has no manifest.
    """
    name = str(archive)
    try:
        with tarfile.open(archive, "r:") as tar:
            members = tar.getmembers()
            if not members or members[-1].name != MANIFEST_NAME:
                raise BackupError(
                    f"{name} is partial or not a flywheel backup: it does not end with its "
                    f"{MANIFEST_NAME} (a backup that stopped midway, or a truncated copy). "
                    "Restore from a complete backup, or take a new one.")
            if not all(m.isfile() for m in members):
                raise BackupError(f"{name} holds links or devices, which a flywheel backup "
                                  "never does; it is not one. Restore from a flywheel backup.")
            tar.extractall(folder, filter="data")
            handle = tar.extractfile(members[-1])
            text = handle.read() if handle is not None else b""
    except (tarfile.TarError, EOFError) as exc:
        raise BackupError(
            f"{name} cannot be read as a flywheel backup ({exc}): it is truncated or corrupt. "
            "Restore from a complete copy, or take a new backup with `flywheel backup -o "
            "FILE`.") from exc
    return BackupManifest.from_json(text, archive=name)


def _rewrite_paths(database: Path, old_root: Path, new_root: Path) -> None:
    """Point every text value naming ``old_root`` (as a file URI or a path) at ``new_root``.

    One pass per value (a regular expression), so a new folder whose name starts with the
    old one's is not rewritten twice.
    """
    old_uri, old_path = old_root.as_uri(), str(old_root)
    pattern = re.compile(f"({re.escape(old_uri)}|{re.escape(old_path)})(?=/|$)")
    swap = {old_uri: new_root.as_uri(), old_path: str(new_root)}

    def rewrite(value: str | None) -> str | None:
        if value is None:
            return value
        return pattern.sub(lambda m: swap[m.group(1)], value)

    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.create_function("flywheel_rewrite", 1, rewrite, deterministic=True)
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            for column in [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]:
                db.execute(f'UPDATE "{table}" SET "{column}" = flywheel_rewrite("{column}") '
                           f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0',
                           (old_path,))
