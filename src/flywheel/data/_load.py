"""Reading tables from CSV and Parquet with one clear error per way a file can be wrong."""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import lzma
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.core.errors import DataError

FileFormat = Literal["auto", "csv", "parquet"]
_EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
DELIMITERS = (",", ";", "\t", "|")
_OPENERS: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_SNIFF_CHARS = 64 * 1024
_SNIFF_LINES = 50


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


def load_table(path: str | Path, *, fmt: FileFormat = "auto", encoding: str = "utf-8",
               delimiter: str | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame.

    Args:
        delimiter: The CSV field delimiter; ``None`` reads it from the file's first lines
            (:func:`sniff_delimiter`; tab for ``.tsv``).

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
        frame = _read_csv(path, encoding, delimiter)
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


def sniff_delimiter(path: str | Path, encoding: str = "utf-8") -> str:
    """The field delimiter of a CSV file (plain, .gz, .bz2 or .xz), read from its first lines.

    Of ``, ; tab |``, the one that splits the header into the most fields and every following
    line into as many (quoting respected); tab for ``.tsv``; ``,`` when none does.
    """
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    if ".tsv" in suffixes:
        return "\t"
    opener = _OPENERS.get(suffixes[-1] if suffixes else "")
    try:
        if opener is not None:
            with opener(path, "rt", encoding=encoding, errors="replace") as handle:
                sample = handle.read(_SNIFF_CHARS)
        else:
            with open(path, encoding=encoding, errors="replace") as handle:
                sample = handle.read(_SNIFF_CHARS)
    except (OSError, LookupError, EOFError, zlib.error, lzma.LZMAError):
        return ","  # the real read reports what is wrong with the file
    lines = sample.splitlines()
    if len(sample) == _SNIFF_CHARS and len(lines) > 1:
        lines = lines[:-1]  # cut off mid-line
    lines = [line for line in lines[:_SNIFF_LINES] if line.strip()]
    best, best_fields = ",", 1
    for candidate in DELIMITERS:
        try:
            counts = [len(row) for row in csv.reader(io.StringIO("\n".join(lines)),
                                                      delimiter=candidate)]
        except csv.Error:
            continue
        if counts and counts[0] > best_fields and all(n == counts[0] for n in counts):
            best, best_fields = candidate, counts[0]
    return best


def _read_csv(path: Path, encoding: str, delimiter: str | None) -> pd.DataFrame:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r}; use a Python codec name such as "
                        "utf-8 or latin-1.", path=path) from None
    sep = delimiter or sniff_delimiter(path, encoding)
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
    except (EOFError, zlib.error, lzma.LZMAError) as exc:  # click would print "Aborted."
        raise DataError(f"cannot be decompressed ({_first_line(exc)}); the file may be "
                        "truncated or corrupt. Compress it again, or give the plain CSV.",
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
    _check_one_column(frame, sep, path)
    # pyarrow reads a column holding invalid UTF-8 as raw bytes instead of failing.
    for column in frame.columns[[dtype == "object" for dtype in frame.dtypes]]:
        values = frame[column].dropna()
        if len(values) and isinstance(values.iloc[0], bytes):
            raise DataError(
                f"column {column!r} is not valid {encoding} text. Re-save the file as UTF-8, or "
                "pass --encoding (e.g. latin-1) / set data.encoding in flywheel.yaml.", path=path
            )
    return frame


def _check_one_column(frame: pd.DataFrame, sep: str, path: Path) -> None:
    """A single column whose name another delimiter splits was read with the wrong one."""
    if len(frame.columns) != 1:
        return
    name = str(frame.columns[0])
    for other in DELIMITERS:
        if other != sep and len(name.split(other)) > 1:
            shown = name if len(name) <= 60 else name[:57] + "..."
            spelled = "\\t" if other == "\t" else other
            raise DataError(
                f"reads as one column named {shown!r} with delimiter {_spell(sep)!r}, but the "
                f"header looks {_spell(other)!r}-delimited. Set data.delimiter: \"{spelled}\" "
                "in flywheel.yaml (or remove it to have the delimiter read from the header).",
                path=path)


def _spell(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else delimiter


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
