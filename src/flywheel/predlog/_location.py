"""Where the prediction log lives: a local or shared folder, or an object-store URI.

``monitoring.log_location`` is resolved once (``resolve_location``); everything else takes the
resolved text. A URI goes to pyarrow's file systems (``s3://``, ``gs://``, ``hdfs://``), which
read credentials from the environment as their drivers do (``AWS_ACCESS_KEY_ID``,
``AWS_ENDPOINT_URL_S3``...); flywheel.yaml never holds them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from flywheel.core.errors import ConfigError

_OPEN_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OSError)

SPOOL_DIR = "_spool"
"""The spool's subfolder of a local log (readers of the data set skip names starting with _)."""


def resolve_location(location: str | Path, root: str | Path) -> str:
    """The log's location as a URI or an absolute path; a relative path is relative to
    ``root`` (the project folder), ``file:///x`` is the path ``/x``."""
    text = str(location).strip()
    scheme, sep, rest = text.partition("://")
    if sep and scheme.lower() != "file":
        return text.rstrip("/")
    path = Path("/" + rest.lstrip("/")) if sep else Path(text).expanduser()
    return str(path if path.is_absolute() else Path(root).resolve() / path)


def is_local(location: str | Path) -> bool:
    """Whether ``location`` (resolved) is a folder on this machine's file systems."""
    return "://" not in str(location)


def open_location(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """The file system holding the log and the log's base path on it.

    Raises:
        ConfigError: If pyarrow cannot open the URI (an unknown scheme, a malformed URI, or
            a file system this pyarrow build lacks).
    """
    text = str(location)
    if is_local(text):
        return pafs.LocalFileSystem(), str(Path(text).resolve())
    try:
        scheme, _, path = text.partition("://")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if scheme.lower() == "s3" and region:
            # With the region known, nothing is asked of the network until the first read
            # (from_uri would look the bucket's region up now).
            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
                "AWS_ENDPOINT_URL")
            filesystem: pafs.FileSystem = pafs.S3FileSystem(region=region,
                                                            endpoint_override=endpoint)
        else:
            filesystem, path = pafs.FileSystem.from_uri(text)
    except _OPEN_ERRORS as exc:
        raise ConfigError(
            f"monitoring.log_location {text!r} cannot be opened ({exc}); expected a folder or "
            "a URI such as s3://bucket/prefix that pyarrow's file systems support.") from exc
    return filesystem, path.rstrip("/")



def check_location(location: str | Path) -> None:
    """Refuse an object-store log whose bucket does not exist (a local folder is created).

    Raises:
        ConfigError: If the bucket is missing or cannot be reached.
    """
    text = str(location)
    if is_local(text):
        return
    filesystem, base = open_location(text)
    bucket = base.split("/", 1)[0]
    try:
        missing = filesystem.get_file_info(bucket).type == pafs.FileType.NotFound
    except OSError as exc:
        raise ConfigError(f"the prediction log at {text} cannot be reached ({exc}); check the "
                          "endpoint and credentials in the environment (AWS_* variables).") from exc
    if missing:
        raise ConfigError(f"the prediction log's bucket {bucket!r} ({text}) does not exist; "
                          "create it, or point monitoring.log_location at one that does.")
