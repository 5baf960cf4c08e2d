"""Batch scoring: a CSV or Parquet file through a registered model, in chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.core.errors import DataError
from flywheel.data import detect_format, load_table
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines._predict_ray import predict_with_ray, resolve_inputs
from flywheel.pipelines._scoring import CHUNK_ROWS, ScoresFile, load_scorer

__all__ = ["CHUNK_ROWS", "check_paths", "count_rows", "predict_file", "predict_with_ray",
           "resolve_inputs"]


def check_paths(source: Path, output: Path) -> int | None:
    """Check the arguments of a batch prediction before any work starts; returns the rows in
    ``source`` when they are known without reading it (a Parquet file's footer), else None.

    Raises:
        DataError: If ``output`` is not a .csv or .parquet path, or ``source`` is missing,
            of a type flywheel does not read, or a corrupt Parquet file.
    """
    try:
        detect_format(output)
    except DataError:
        raise DataError(f"cannot write {output.suffix or 'a file without an extension'!r}; "
                        "the scores are written as CSV or Parquet: end the path in .csv or "
                        ".parquet.", path=output) from None
    if not source.is_file():
        raise DataError("file not found; check the path." if not source.exists() else
                        "is a folder, expected a CSV or Parquet file.", path=source)
    return count_rows(source)


def count_rows(path: Path) -> int | None:
    """Rows in a Parquet file (from its footer); None for CSV (unknown without reading it).

    Raises:
        DataError: If the Parquet file cannot be read (truncated, corrupt, not Parquet).
    """
    if detect_format(path) == "parquet":
        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable_parquet(path, exc) from exc
    return None


def predict_file(project: ProjectContext, source: str | Path, output: str | Path, *,
                 model: str = "champion", chunk_rows: int = CHUNK_ROWS,
                 on_chunk: Callable[[int], None] | None = None) -> dict[str, object]:
    """Score every row of ``source`` with the model at ``model`` (alias or version) and write
    the input columns plus predictions (and class probabilities) to ``output``.

    The output is written to a temporary file and renamed at the end: an interrupted run
    leaves no partial file.

    Raises:
        DataError: If a file cannot be read or written, has no rows, or lacks the model's
            features.
        ModelNotFoundError: If ``model`` names no version.
    """
    source, output = Path(source), Path(output)
    check_paths(source, output)
    scorer, info = load_scorer(project, model)
    with ScoresFile(output, detect_format(output)) as sink:
        for chunk in _chunks(source, chunk_rows, project.spec.data.encoding,
                             project.spec.data.delimiter):
            scorer.check_columns(chunk.column_names, str(source))
            sink.write(scorer(chunk))
            if on_chunk is not None:
                on_chunk(chunk.num_rows)
        if sink.rows == 0:
            raise DataError("has no rows to score (only a header, or an empty table); nothing "
                            f"was written to {output}. Score a file with at least one data "
                            "row.", path=source)
    return {"rows": sink.rows, "version": info.version, "output": str(output),
            "form": scorer.form}


def _chunks(path: Path, chunk_rows: int, encoding: str,
            delimiter: str | None) -> Iterator[pa.Table]:
    if detect_format(path) == "parquet":
        try:
            handle = pq.ParquetFile(path)
            for batch in handle.iter_batches(batch_size=chunk_rows):
                yield pa.Table.from_batches([batch])
            return
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable_parquet(path, exc) from exc
    # CSV: one clear-error reader for every case
    frame = load_table(path, encoding=encoding, delimiter=delimiter)
    for start in range(0, len(frame), chunk_rows):
        try:
            yield pa.Table.from_pandas(frame.iloc[start:start + chunk_rows], preserve_index=False)
        except pa.ArrowException as exc:
            raise DataError(f"has a column of mixed types ({exc}); give each column one type.",
                            path=path) from exc


def _unreadable_parquet(path: Path, exc: BaseException) -> DataError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return DataError(f"cannot be read as Parquet ({first}); the file may be truncated, corrupt "
                     "or not Parquet. Re-export it, or check it with `flywheel validate`.",
                     path=path)
