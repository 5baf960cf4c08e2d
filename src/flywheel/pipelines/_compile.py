"""At registration: compile the model to its fast serving form and verify it on holdout rows."""

from __future__ import annotations

from typing import Any

import pandas as pd

from flywheel.core.errors import CompileError
from flywheel.core.spec import Task
from flywheel.data import DataSchema
from flywheel.features import compile_predictor, verify_compiled

ATOL = 1e-6
"""Largest absolute difference from the pipeline's output the fast form may show."""


def compiled_form_tags(model: Any, schema: DataSchema, task: Task,
                       holdout: pd.DataFrame) -> dict[str, str]:
    """Version tags saying whether the compiled form reproduces the pipeline on ``holdout``.

    The server compiles the model again when it loads it (compilation is deterministic) and
    uses the fast form only when these tags say it was verified.
    """
    try:
        compiled = compile_predictor(model, schema, task=task)
    except CompileError as exc:
        return {"flywheel.compiled.verified": "false", "flywheel.compiled.error": str(exc)[:500]}
    return verify_compiled(compiled, model, holdout, atol=ATOL).to_tags()
