"""Batch scoring: a CSV or Parquet file through a registered model, in chunks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.core.errors import DataError
from flywheel.core.workspace import atomic_write_bytes
from flywheel.data import detect_format, load_table
from flywheel.evaluation import predict_scores
from flywheel.pipelines._context import ProjectContext

CHUNK_ROWS = 50_000


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
    out_format = detect_format(output)
    registry = project.registry()
    info = registry.version_info(model)
    pipeline = registry.load_model(info.version, allow_pickle=project.spec.training.allow_pickle)
    features = list(pipeline[0].feature_names_in_) if hasattr(pipeline[0], "feature_names_in_") \
        else project.schema.feature_columns
    classes = json.loads(info.tags.get("flywheel.classes", "[]"))
    task = info.tags.get("flywheel.task", "")  # no tag: a classifier, as before tags existed
    regression = task == "regression"
    parts: list[pd.DataFrame] = []
    rows = 0
    for chunk in _chunks(source, chunk_rows, project.spec.data.encoding,
                         project.spec.data.delimiter):
        missing = [c for c in features if c not in chunk.columns]
        if missing:
            raise DataError(f"lacks the model's feature column(s) {missing}; the model was "
                            "trained on: " + ", ".join(features), path=source)
        scored = chunk.copy()
        scores = predict_scores(pipeline, chunk[features], task)
        if regression:
            scored["prediction"] = scores
        else:
            proba = scores
            scored["prediction"] = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
            for k, label in enumerate(classes):
                scored[f"proba_{label}"] = proba[:, k]
        parts.append(scored)
        rows += len(chunk)
        if on_chunk is not None:
            on_chunk(len(chunk))
    if rows == 0:
        raise DataError("has no rows to score (only a header, or an empty table); nothing was "
                        f"written to {output}. Score a file with at least one data row.",
                        path=source)
    result = pd.concat(parts, ignore_index=True)
    _write(result, output, out_format)
    return {"rows": rows, "version": info.version, "output": str(output)}


def _chunks(path: Path, chunk_rows: int, encoding: str,
            delimiter: str | None) -> Iterator[pd.DataFrame]:
    if detect_format(path) == "parquet":
        try:
            handle = pq.ParquetFile(path)
            for batch in handle.iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
            return
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable_parquet(path, exc) from exc
    # CSV: one clear-error reader for every case
    frame = load_table(path, encoding=encoding, delimiter=delimiter)
    for start in range(0, len(frame), chunk_rows):
        yield frame.iloc[start:start + chunk_rows]


def _unreadable_parquet(path: Path, exc: BaseException) -> DataError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return DataError(f"cannot be read as Parquet ({first}); the file may be truncated, corrupt "
                     "or not Parquet. Re-export it, or check it with `flywheel validate`.",
                     path=path)


def _write(frame: pd.DataFrame, output: Path, fmt: str) -> None:
    try:
        if fmt == "parquet":
            sink = pa.BufferOutputStream()
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
            atomic_write_bytes(output, sink.getvalue().to_pybytes())
        else:
            atomic_write_bytes(output, frame.to_csv(index=False).encode("utf-8"))
    except OSError as exc:
        raise DataError(f"cannot be written ({exc.strerror}).", path=output) from exc
