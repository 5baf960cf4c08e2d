"""Batch scoring on Ray Data (``flywheel predict IN -o OUT --engine ray``).

The input is read by Ray Data (a Parquet or CSV file, a folder or glob of them, or an
object-store URI such as ``s3://bucket/prefix``), scored by ``map_batches`` with the same
``BatchScorer`` the local engine uses (compiled predictor when verified, pipeline otherwise) in
tasks fused with the read, with Arrow batches end to end, in input order. Local Parquet files
are read row group by row group (``_ray_parquet``), so one large file is scored on every CPU.
An output ending in ``.parquet`` is one file that this process streams the scored blocks into
(renamed into place at the end, like the local engine's); any other output (a folder, a URI)
gets Ray Data's own ``write_parquet`` files.

Ray is imported only here, inside the functions.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flywheel.core.errors import DataError, FlywheelError
from flywheel.core.rayconnect import connect_ray
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines._ray_parquet import read_row_groups
from flywheel.pipelines._scoring import CHUNK_ROWS, ScoresFile, load_scorer

__all__ = ["predict_with_ray", "resolve_inputs"]

_READABLE = (".parquet", ".csv")


def resolve_inputs(source: str) -> tuple[list[str], str]:
    """The paths Ray Data reads for ``source``, and their format (parquet or csv).

    A URI (``scheme://...``) passes through as it is; a local file, folder or glob is expanded
    here, so a wrong one fails before Ray starts.

    Raises:
        DataError: If nothing matches, or the files are not all .parquet or all .csv.
    """
    if "://" in source:
        suffix = Path(source.rstrip("/")).suffix.lower()
        return [source], "csv" if suffix == ".csv" else "parquet"
    path = Path(source)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in _READABLE
                       and p.is_file() and not p.name.startswith((".", "_")))
    elif any(ch in source for ch in "*?["):
        files = sorted(glob.glob(source, recursive=True))
    else:
        files = [source] if path.is_file() else []
    if not files:
        raise DataError("matches no file: expected a Parquet or CSV file, a folder holding "
                        "them, a glob, or an object-store URI (s3://...).", path=source)
    suffixes = {Path(f).suffix.lower() for f in files}
    if len(suffixes) != 1 or not suffixes <= set(_READABLE):
        raise DataError(f"holds files of type(s) {sorted(suffixes)}; Ray Data reads one kind "
                        "at a time: all .parquet or all .csv.", path=source)
    return files, suffixes.pop().lstrip(".")


def predict_with_ray(project: ProjectContext, source: str, output: str, *,
                     model: str = "champion", chunk_rows: int = CHUNK_ROWS,
                     address: str | None = None, workers: int = 2,
                     on_chunk: Callable[[int], None] | None = None) -> dict[str, object]:
    """Score ``source`` with the version at ``model`` on Ray Data; ``predict_file``'s result.

    Args:
        address: None starts a local Ray for the run; ``auto``, ``HOST:PORT`` or
            ``ray://HOST:PORT`` uses a cluster.
        workers: CPUs of a local Ray (a cluster uses its own).

    Raises:
        DataError: If Ray Data cannot read ``source``, it has no rows or lacks the model's
            features, or the output cannot be written.
        ConfigError: If Ray is not installed or ``address`` cannot be reached.
        ModelNotFoundError: If ``model`` names no version.
    """
    paths, fmt = resolve_inputs(source)
    local_file = "://" not in output and output.lower().endswith(".parquet")
    if not local_file and ("://" not in output and Path(output).suffix.lower() == ".csv"):
        raise DataError("the ray engine writes Parquet: end the path in .parquet, or name a "
                        "folder or an object-store URI for Ray Data's part files.", path=output)
    scorer, info = load_scorer(project, model)
    ray, owned = connect_ray(address, cpus=workers, setting="--ray-address")
    try:
        dataset = _read(ray, paths, fmt, source, project, chunk_rows)
        scorer.check_columns(list(dataset.schema().names), source)
        # Tasks, not an actor pool: the read fuses into the same task (actors holding every
        # CPU would starve the read tasks), and a worker process keeps the scorer it was sent.
        scored = dataset.map_batches(scorer, batch_format="pyarrow", batch_size=chunk_rows,
                                     num_cpus=1, zero_copy_batch=True)
        rows = _write(ray, scored, output, local_file, source, on_chunk)
    finally:
        if owned:
            ray.shutdown()
    if rows == 0:
        raise DataError("has no rows to score (only a header, or an empty table); nothing was "
                        f"written to {output}. Score data with at least one row.", path=source)
    return {"rows": rows, "version": info.version, "output": output, "form": scorer.form}


def _read(ray: Any, paths: list[str], fmt: str, source: str, project: ProjectContext,
          chunk_rows: int) -> Any:
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # output rows in input order
    context.enable_progress_bars = False  # the CLI draws its own
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        if fmt == "csv":
            import pyarrow.csv as pacsv

            delimiter = project.spec.data.delimiter or ","
            return ray.data.read_csv(paths, parse_options=pacsv.ParseOptions(
                delimiter=delimiter), encoding=project.spec.data.encoding)
        if "://" in paths[0] or len(paths) > 1:  # several files: a task per file already
            return ray.data.read_parquet(paths)
        return read_row_groups(ray, paths, batch_rows=chunk_rows)
    except Exception as exc:  # Ray Data and pyarrow raise many kinds for an unreadable path
        raise _unreadable(source, exc) from exc


def _write(ray: Any, scored: Any, output: str, local_file: bool, source: str,
           on_chunk: Callable[[int], None] | None) -> int:
    try:
        if not local_file:
            scored.write_parquet(output)
            return int(ray.data.read_parquet(output).count())
        with ScoresFile(Path(output), "parquet") as sink:
            # Prefetching lets the next blocks arrive while this process writes one.
            for batch in scored.iter_batches(batch_format="pyarrow", batch_size=None,
                                             prefetch_batches=4):
                sink.write(batch)
                if on_chunk is not None:
                    on_chunk(batch.num_rows)
            return sink.rows
    except FlywheelError:
        raise
    except Exception as exc:  # raised while Ray Data reads and scores the blocks
        cause = _user_error(exc)
        if isinstance(cause, FlywheelError):
            raise cause from exc
        raise _unreadable(source, exc) from exc


def _user_error(exc: BaseException) -> BaseException | None:
    """The flywheel error a Ray task raised, if that is what ``exc`` wraps."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, FlywheelError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _unreadable(source: str, exc: BaseException) -> DataError:
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    first = next((line for line in lines if "Error" in line or "error" in line),
                 lines[0] if lines else type(exc).__name__)
    return DataError(f"Ray Data cannot read it ({type(exc).__name__}: {first.strip()[:300]}); "
                     "expected Parquet or CSV files. Check the path, the files' format and, "
                     "for a URI, the credentials.", path=source)
