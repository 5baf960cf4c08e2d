"""One batch scorer for every batch engine: an Arrow table in, the same table with the model's
prediction (and class probabilities) appended out.

The local engine and Ray Data's ``map_batches`` call the same ``BatchScorer``, so their outputs
are equal row for row by construction. It answers through the compiled predictor when the
version's compiled form was verified at registration (as the server does), through the
pipeline otherwise. It pickles without the compiled form, which each process rebuilds on its
first batch (compilation is deterministic).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.core.errors import CompileError, DataError
from flywheel.core.spec import Task
from flywheel.data import DataSchema
from flywheel.evaluation import predict_scores
from flywheel.features import CompiledPredictor, compile_predictor
from flywheel.pipelines._context import ProjectContext
from flywheel.registry import ModelVersionInfo

__all__ = ["CHUNK_ROWS", "BatchScorer", "ScoresFile", "load_scorer"]

CHUNK_ROWS = 50_000
"""Rows per batch the engines score at once."""


class BatchScorer:
    """Scores Arrow tables with one registered version.

    Args:
        model: The fitted pipeline, as the registry loads it.
        schema: The project's schema (the compiled form needs it).
        tags: The version's tags (task, classes, whether its compiled form was verified).
    """

    def __init__(self, model: Any, schema: DataSchema, tags: dict[str, str]) -> None:
        self.model, self.schema = model, schema
        self.task: Task = tags.get("flywheel.task", schema.task)  # type: ignore[assignment]
        self.classes: list[str] = [str(c) for c in json.loads(tags.get("flywheel.classes",
                                                                       "[]"))]
        first: Any = model[0] if hasattr(model, "steps") else None
        self.features: list[str] = (list(first.feature_names_in_)
                                    if hasattr(first, "feature_names_in_")
                                    else schema.feature_columns)
        self.use_compiled = tags.get("flywheel.compiled.verified") == "true"
        self._compiled: CompiledPredictor | None = None

    @property
    def form(self) -> str:
        """What answers: ``compiled`` or ``pipeline``."""
        return "compiled" if self.use_compiled else "pipeline"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_compiled": None}

    def check_columns(self, names: list[str], source: str) -> None:
        """Raises:
            DataError: If a feature column of the model is not in ``names``.
        """
        missing = [c for c in self.features if c not in names]
        if missing:
            raise DataError(f"lacks the model's feature column(s) {missing}; the model was "
                            "trained on: " + ", ".join(self.features), path=source)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """``batch`` with ``prediction`` (a label, or the value for regression) and, for
        classifiers, ``proba_<class>`` columns appended; schema metadata dropped."""
        scores = self.scores(batch)
        out = batch.replace_schema_metadata(None)
        if self.task == "regression":
            return out.append_column("prediction", pa.array(scores, type=pa.float64()))
        labels = np.asarray(self.classes, dtype=object)[scores.argmax(axis=1)] \
            if len(scores) else np.empty(0, dtype=object)
        out = out.append_column("prediction", pa.array(labels, type=pa.string()))
        for k, label in enumerate(self.classes):
            out = out.append_column(f"proba_{label}", pa.array(scores[:, k], type=pa.float64()))
        return out

    def scores(self, batch: pa.Table) -> np.ndarray:
        """The model's raw output on ``batch``: (rows, classes) probabilities or (rows,)."""
        compiled = self._compiled_form()
        if compiled is not None:  # pandas columns, as verify_compiled checked them
            frame = batch.select(compiled.feature_columns).to_pandas()
            return compiled.predict_columns({c: frame[c] for c in compiled.feature_columns})
        return predict_scores(self.model, batch.select(self.features).to_pandas(), self.task)

    def _compiled_form(self) -> CompiledPredictor | None:
        if self.use_compiled and self._compiled is None:
            try:
                self._compiled = compile_predictor(self.model, self.schema, task=self.task)
            except CompileError:  # verified at registration; a changed library may refuse
                self.use_compiled = False
        return self._compiled


class ScoresFile:
    """The output of a batch prediction, written table by table to a temporary file beside
    ``path`` and renamed over it when the block ends without error: an interrupted or failed
    run leaves no partial file.

    Raises:
        DataError: If the file cannot be written.
    """

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self.rows = 0
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._writer: pq.ParquetWriter | None = None
        self._handle: Any = None

    def __enter__(self) -> ScoresFile:
        return self

    def write(self, table: pa.Table) -> None:
        try:
            if self.fmt == "parquet":
                if self._writer is None:
                    self._writer = pq.ParquetWriter(self._tmp, table.schema)
                elif table.schema != self._writer.schema:
                    table = table.cast(self._writer.schema)  # a column all null in one chunk
                self._writer.write_table(table)
            else:
                if self._handle is None:
                    # closed in __exit__, which also decides whether it replaces the output
                    self._handle = open(self._tmp, "w", encoding="utf-8",  # noqa: SIM115
                                        newline="")
                table.to_pandas().to_csv(self._handle, index=False, header=self.rows == 0)
        except OSError as exc:
            raise DataError(f"cannot be written ({exc.strerror or exc}).", path=self.path) from exc
        except pa.ArrowException as exc:
            raise DataError(f"cannot be written: a chunk's column types differ from the first "
                            f"chunk's ({exc}); give the column one type.", path=self.path) from exc
        self.rows += table.num_rows

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for closing in (self._writer, self._handle):
            if closing is not None:
                closing.close()
        if exc_type is None and self.rows:
            try:
                os.replace(self._tmp, self.path)
                return
            except OSError as error:
                raise DataError(f"cannot be written ({error.strerror}).",
                                path=self.path) from error
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


def load_scorer(project: ProjectContext, model: str) -> tuple[BatchScorer, ModelVersionInfo]:
    """The scorer of the version at ``model`` (alias or version), and that version.

    Raises:
        ModelNotFoundError: If ``model`` names no version.
    """
    registry = project.registry()
    info = registry.version_info(model)
    pipeline = registry.load_model(info.version, allow_pickle=project.spec.training.allow_pickle)
    return BatchScorer(pipeline, project.schema, dict(info.tags)), info
