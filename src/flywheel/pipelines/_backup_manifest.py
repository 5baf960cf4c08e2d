"""The manifest of a workspace backup: every file's path, size and SHA-256, and what was left out.

A backup is a tar archive whose last member is ``MANIFEST.json``. Restore reads the whole
archive and accepts it only if the manifest is there, names exactly the archive's other
members, and every member's size and checksum match: a truncated, corrupt or partial archive
(a backup killed midway never gets its final name, see :mod:`flywheel.pipelines.backup`) is
refused before anything is written where the project will live.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from flywheel.core.errors import BackupError

__all__ = ["FORMAT", "MANIFEST_NAME", "BackupManifest", "ManifestFile", "sha256_of"]

FORMAT = "flywheel-backup/1"
MANIFEST_NAME = "MANIFEST.json"
_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """SHA-256 hex digest of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class ManifestFile:
    """One archived file: its POSIX path relative to the project folder, size and checksum."""

    path: str
    size: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class BackupManifest:
    """What a backup holds.

    Attributes:
        source_root: The project folder it was taken from (restore rewrites the absolute
            artifact locations MLflow keeps in its store from this folder to the new one).
        created: When it was taken (ISO 8601, UTC).
        files: Every archived file.
        excluded: One line a person reads per part of the project left out, and why.
    """

    source_root: str
    created: str
    files: tuple[ManifestFile, ...]
    excluded: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "source_root": self.source_root,
                           "created": self.created, "excluded": list(self.excluded),
                           "files": [dataclasses.asdict(f) for f in self.files]},
                          indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: bytes, *, archive: str) -> BackupManifest:
        """The manifest in ``text`` (the bytes of ``MANIFEST.json`` of ``archive``).

        Raises:
            BackupError: If it is not JSON, not a flywheel backup manifest, or of another
                format version.
        """
        try:
            raw: Any = json.loads(text)
            if not isinstance(raw, dict) or raw.get("format") != FORMAT:
                found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
                raise BackupError(
                    f"{archive} is not a flywheel backup this version can restore: its "
                    f"manifest's format is {found!r}, expected {FORMAT!r}. Restore it with the "
                    "flywheel version that took it, or take a new backup.")
            files = tuple(ManifestFile(path=str(f["path"]), size=int(f["size"]),
                                       sha256=str(f["sha256"])) for f in raw["files"])
            return cls(source_root=str(raw["source_root"]), created=str(raw["created"]),
                       files=files, excluded=tuple(str(e) for e in raw.get("excluded", [])))
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(
                f"{archive} has an unreadable manifest ({type(exc).__name__}: {exc}); the "
                "backup is corrupt. Take a new backup with `flywheel backup -o FILE`.") from exc

    def verify(self, folder: Path, *, archive: str) -> None:
        """Check that ``folder`` holds exactly the manifest's files with their sizes and checksums.

        Raises:
            BackupError: Naming the first file missing, extra, or whose size or checksum differs.
        """
        expected = {f.path: f for f in self.files}
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        extra = sorted(present - set(expected) - {MANIFEST_NAME})
        missing = sorted(set(expected) - present)
        if missing:
            raise BackupError(
                f"{archive} is partial: {len(missing)} file(s) its manifest lists are missing "
                f"(first: {missing[0]}). Restore from a complete backup, or take a new one.")
        if extra:
            raise BackupError(
                f"{archive} holds {len(extra)} file(s) its manifest does not list (first: "
                f"{extra[0]}); it was altered after it was taken. Restore from an unaltered "
                "backup, or take a new one.")
        for entry in self.files:
            path = folder / entry.path
            size = path.stat().st_size
            if size != entry.size or sha256_of(path) != entry.sha256:
                raise BackupError(
                    f"{archive} is corrupt: {entry.path} has "
                    + (f"{size} bytes, the manifest says {entry.size}" if size != entry.size
                       else "another SHA-256 than its manifest's")
                    + ". Restore from an intact copy of the backup, or take a new one.")
