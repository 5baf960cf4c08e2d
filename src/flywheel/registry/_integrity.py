"""Checksums over a saved model's files, to refuse a model whose files changed after logging.

The manifest lists every file of the model folder with its SHA-256, one ``<hex>  <path>`` line
each, sorted by path (the format of ``sha256sum``, so ``sha256sum -c`` can check it by hand).
The model's checksum is the SHA-256 of that manifest text: it changes if any file is edited,
added, removed or renamed, including ``MLmodel``, whose skops trusted-types list would otherwise
let an edited model widen what loading may build.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["checksum_of", "describe_changes", "file_digests", "manifest_text", "parse_manifest"]

_CHUNK = 1 << 20
# MLflow itself adds this file to a registered model's folder when anyone loads it by a
# models:/ URI (`mlflow models serve -m models:/name/1` does). flywheel never reads it, so it
# is left out of the manifest rather than flagged as tampering.
_MLFLOW_WRITTEN = frozenset({"registered_model_meta"})


def file_digests(folder: str | Path) -> dict[str, str]:
    """SHA-256 hex digest of every file under ``folder``, keyed by POSIX relative path."""
    root = Path(folder)
    digests: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.parent == root and path.name in _MLFLOW_WRITTEN:
            continue
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        digests[path.relative_to(root).as_posix()] = digest.hexdigest()
    return digests


def manifest_text(digests: dict[str, str]) -> str:
    """The ``sha256sum``-style manifest of ``digests``."""
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))


def checksum_of(digests: dict[str, str]) -> str:
    """``sha256:<hex>`` of the manifest of ``digests``."""
    return "sha256:" + hashlib.sha256(manifest_text(digests).encode("utf-8")).hexdigest()


def describe_changes(expected: dict[str, str], found: dict[str, str]) -> str:
    """A short account of how ``found`` differs from ``expected``, for error messages."""
    changed = sorted(n for n in expected.keys() & found.keys() if expected[n] != found[n])
    missing = sorted(expected.keys() - found.keys())
    added = sorted(found.keys() - expected.keys())
    parts = []
    if changed:
        parts.append("changed: " + ", ".join(changed))
    if missing:
        parts.append("missing: " + ", ".join(missing))
    if added:
        parts.append("unexpected: " + ", ".join(added))
    return "; ".join(parts) or "no file differs, but the checksum does"


def parse_manifest(text: str) -> dict[str, str]:
    """Invert :func:`manifest_text`; lines that do not parse are skipped."""
    digests: dict[str, str] = {}
    for line in text.splitlines():
        hexdigest, sep, name = line.partition("  ")
        if sep and len(hexdigest) == 64:
            digests[name] = hexdigest
    return digests
