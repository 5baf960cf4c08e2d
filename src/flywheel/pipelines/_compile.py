"""At registration: compile the model to its fast serving form and verify it on holdout rows."""

from __future__ import annotations

from typing import Any

import pandas as pd

from flywheel.core.errors import CompileError
from flywheel.core.spec import Task
from flywheel.data import DataSchema
from flywheel.features import CompiledPredictor, compile_predictor, verify_compiled

ATOL = 1e-6
"""Largest absolute difference from the pipeline's output the fast form may show."""


def compile_for_serving(model: Any, schema: DataSchema, task: Task, holdout: pd.DataFrame
                        ) -> tuple[CompiledPredictor | None, dict[str, str]]:
    """The compiled form if it reproduces the pipeline on ``holdout`` (else None), and version
    tags saying so.

    The gates measure latency on what this returns; the server compiles the model again when
    it loads it (compilation is deterministic) and uses the fast form only when the tags say it
    was verified.
    """
    try:
        compiled = compile_predictor(model, schema, task=task)
    except CompileError as exc:
        return None, {"flywheel.compiled.verified": "false",
                      "flywheel.compiled.error": str(exc)[:500]}
    report = verify_compiled(compiled, model, holdout, atol=ATOL)
    return (compiled if report.verified else None), report.to_tags()
