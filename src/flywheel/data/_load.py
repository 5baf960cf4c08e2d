"""Reading tables from CSV and Parquet with one clear error per way a file can be wrong."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.core.errors import DataError

FileFormat = Literal["auto", "csv", "parquet"]
_EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}


def detect_format(path: Path, fmt: FileFormat = "auto") -> Literal["csv", "parquet"]:
    """The file format named by ``fmt``, or by the extension when ``fmt`` is auto.

    Raises:
        DataError: If the extension is not one flywheel reads.
    """
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] in ([".gz"], [".zst"], [".bz2"], [".xz"], [".zip"]):
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext not in _EXTENSIONS:
        raise DataError(
            f"unsupported file type {ext or '(no extension)'!r}; flywheel reads CSV (.csv, .tsv, "
            "optionally compressed) and Parquet (.parquet). Convert the file, or set "
            "data.format in flywheel.yaml.", path=path
        )
    return _EXTENSIONS[ext]  # type: ignore[return-value]


def load_table(path: str | Path, *, fmt: FileFormat = "auto",
               encoding: str = "utf-8") -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame.

    Raises:
        DataError: If the file is missing, empty, not in the stated format or encoding, or
            corrupt. The message names the file and what to do.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found; check the path (relative paths are relative to "
                        "flywheel.yaml, or to the current folder on the command line).", path=path)
    if path.is_dir():
        raise DataError("is a folder, expected a CSV or Parquet file.", path=path)
    kind = detect_format(path, fmt)
    if path.stat().st_size == 0:
        raise DataError("the file is empty (0 bytes); expected a table with a header row.",
                        path=path)
    if kind == "parquet":
        frame = _read_parquet(path)
    else:
        frame = _read_csv(path, encoding)
    if frame.columns.duplicated().any():
        dupes = sorted(set(frame.columns[frame.columns.duplicated()].astype(str)))
        raise DataError(f"duplicate column names {dupes}; give each column a unique name.",
                        path=path)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        names = pq.read_schema(path).names
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise DataError(f"duplicate column names {dupes}; give each column a unique name.",
                            path=path)
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(
            f"cannot be read as Parquet ({_first_line(exc)}); the file may be corrupt or not "
            "Parquet. Re-export it, or set data.format: csv if it is a CSV file.", path=path
        ) from exc


def _read_csv(path: Path, encoding: str) -> pd.DataFrame:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r}; use a Python codec name such as "
                        "utf-8 or latin-1.", path=path) from None
    sep = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
    fast = encoding.lower().replace("-", "").replace("_", "") == "utf8"
    try:
        frame = pd.read_csv(path, sep=sep, encoding=encoding, engine="pyarrow" if fast else "c")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"is not valid {encoding} text ({exc.reason} at byte {exc.start}). Re-save it as "
            "UTF-8, or pass --encoding (e.g. latin-1) / set data.encoding in flywheel.yaml.",
            path=path,
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError("has no columns; expected a header row and data rows.",
                        path=path) from exc
    except (pd.errors.ParserError, pa.ArrowException, ValueError, OSError) as exc:
        message = _first_line(exc)
        if "invalid utf" in message.lower() or "utf-8" in message.lower():
            raise DataError(
                f"is not valid {encoding} text ({message}). Re-save it as UTF-8, or pass "
                "--encoding (e.g. latin-1) / set data.encoding in flywheel.yaml.", path=path
            ) from exc
        raise DataError(f"cannot be parsed as CSV ({message}); check the delimiter, quoting and "
                        "that every row has the same number of fields.", path=path) from exc
    # pyarrow reads a column holding invalid UTF-8 as raw bytes instead of failing.
    for column in frame.columns[frame.dtypes == object]:
        values = frame[column].dropna()
        if len(values) and isinstance(values.iloc[0], bytes):
            raise DataError(
                f"column {column!r} is not valid {encoding} text. Re-save the file as UTF-8, or "
                "pass --encoding (e.g. latin-1) / set data.encoding in flywheel.yaml.", path=path
            )
    return frame


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
