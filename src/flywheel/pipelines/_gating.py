"""Gates and the model card inside `flywheel train`: score the champion on the new holdout, run
the gates, and write the card. Composes evaluation with the registry; kept out of train.py so
the training flow reads in one screen.

The champion comparison must be fair: the champion is scored only on holdout rows it never
trained on. Each version records a 64-bit hash of every row it trained on (its feature
values, not the label) as ``evaluation/train_rows.json``; holdout rows whose hash the champion
trained on are left out, and how many is reported. A champion from before this record counts
every holdout row, and the report says so.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flywheel.core.spec import ProjectSpec
from flywheel.data import DataSchema
from flywheel.evaluation import (
    CardInputs,
    ChampionPredictions,
    FastPath,
    GateInputs,
    GateReport,
    build_model_card,
    predict_scores,
    run_gates,
)
from flywheel.features import CompiledPredictor, OnnxPredictor, contribution_importance
from flywheel.registry import CHAMPION, MlflowRegistry, ModelVersionInfo

__all__ = ["GATES_ARTIFACT", "TRAIN_ROWS_ARTIFACT", "gate_candidate", "log_model_card",
           "read_train_rows", "row_hashes", "train_rows_record"]

TRAIN_ROWS_ARTIFACT = "evaluation/train_rows.json"
GATES_ARTIFACT = "evaluation/gates.json"
CARD_FOLDER = "card"


def row_hashes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A 64-bit hash of each row's values in ``columns`` (order as given, index ignored)."""
    return np.asarray(pd.util.hash_pandas_object(frame[columns], index=False), dtype=np.uint64)


def train_rows_record(frame: pd.DataFrame, columns: list[str]) -> str:
    """The JSON text of ``evaluation/train_rows.json`` for the rows a model trained on."""
    hashes = np.unique(row_hashes(frame, columns)).astype("<u8")
    return json.dumps({"columns": columns, "rows": len(frame), "distinct": len(hashes),
                       "hashes": base64.b64encode(hashes.tobytes()).decode("ascii")})


def gate_candidate(*, spec: ProjectSpec, schema: DataSchema, registry: MlflowRegistry,
                   model: Any, frame: pd.DataFrame, holdout_rows: np.ndarray,
                   y_holdout: np.ndarray, prediction: np.ndarray, metric: str,
                   holdout_metrics: Mapping[str, float], cv_metrics: Mapping[str, float],
                   classes: tuple[str, ...], target_range: tuple[float, float] | None,
                   compiled: CompiledPredictor | OnnxPredictor | None = None,
                   on_gate: Callable[[str], None] | None = None,
                   version: str | None = None) -> GateReport:
    """Run the spec's gates on a freshly trained model, against the current champion.

    ``compiled`` is the verified fast form the server will use (None: the pipeline serves).
    ``version`` is the registered version being gated again (``flywheel gates --rerun``);
    if it is the champion, the champion gate is skipped, saying so.
    """
    features = schema.feature_columns
    holdout = frame.iloc[holdout_rows].reset_index(drop=True)
    champion_number = registry.alias_version(CHAMPION)
    is_champion = version is not None and champion_number == version
    champion = None if is_champion else _score_champion(registry, holdout, spec=spec,
                                                        classes=classes)
    sensitive = [c for c in spec.gates.fairness.sensitive_columns if c in holdout.columns]
    inputs = GateInputs(
        task=spec.target.task, metric=metric, model=model, holdout=holdout[features],
        y=y_holdout, prediction=prediction, holdout_metrics=holdout_metrics,
        cv_metrics=cv_metrics, kinds={n: schema.columns[n].kind for n in features},
        champion=champion, groups=holdout[sensitive] if sensitive else None,
        target_range=target_range, seed=spec.training.search.seed,
        fast_path=_fast_path(compiled),
        **({"no_champion": f"version {version} is the champion itself"} if is_champion
           else {}))
    return run_gates(spec.gates, inputs, on_gate=on_gate)


def _fast_path(compiled: CompiledPredictor | OnnxPredictor | None) -> FastPath | None:
    """What a server answers with instead of the pipeline, if anything."""
    if compiled is None:
        return None
    return FastPath(
        "onnx" if compiled.kind == "onnx" else "compiled",
        predict_record=lambda record: compiled.predict_records([record]),
        predict_frame=lambda frame: compiled.predict_columns(
            {c: frame[c] for c in frame.columns}))


def _score_champion(registry: MlflowRegistry, holdout: pd.DataFrame, *, spec: ProjectSpec,
                    classes: tuple[str, ...]) -> ChampionPredictions | None:
    if spec.gates.champion.mode == "off":
        return None
    number = registry.alias_version(CHAMPION)
    if number is None:
        return None
    try:
        info = next((v for v in registry.versions() if v.version == number), None)
        if info is None:
            raise LookupError(f"alias champion points at version {number}, which is missing")
        recorded = info.tags.get("flywheel.classes")
        if spec.target.task != "regression" and recorded is not None \
                and tuple(json.loads(recorded)) != tuple(classes):
            raise ValueError(f"the champion was trained on classes {json.loads(recorded)}, "
                             f"this model on {list(classes)}")
        model = registry.load_model(number)
        columns = [str(c) for c in getattr(model, "feature_names_in_", [])] or None
        keep, note = _unseen_rows(registry, info, holdout)
        data = holdout.iloc[keep]
        if columns is not None:
            missing = [c for c in columns if c not in data.columns]
            if missing:
                raise ValueError(f"the champion needs columns the data lacks: {missing}")
            data = data[columns]
        prediction = predict_scores(model, data, spec.target.task)
    except Exception as exc:  # any failure to score the champion fails the gate, visibly
        return ChampionPredictions(number, error=f"{type(exc).__name__}: {exc}")
    return ChampionPredictions(number, rows=keep, prediction=prediction,
                               excluded=len(holdout) - len(keep), note=note)


def _unseen_rows(registry: MlflowRegistry, info: ModelVersionInfo, holdout: pd.DataFrame
                 ) -> tuple[np.ndarray, str]:
    """Positions of holdout rows the champion did not train on, and how they were found."""
    everything = np.arange(len(holdout))
    record = read_train_rows(registry, info)
    if record is None:
        return everything, (f"champion v{info.version} has no record of its training rows; "
                            "every holdout row is compared")
    columns = list(record["columns"])
    missing = [c for c in columns if c not in holdout.columns]
    if missing:
        return everything, (f"the data lacks columns champion v{info.version} trained on "
                            f"({', '.join(missing[:5])}); overlap not checked, every holdout "
                            "row is compared")
    seen = np.frombuffer(base64.b64decode(record["hashes"]), dtype="<u8")
    mine = row_hashes(holdout, columns)
    keep = everything[~np.isin(mine, seen)]
    return keep, (f"{len(keep)} of {len(holdout)} holdout rows unseen by champion "
                  f"v{info.version} ({len(holdout) - len(keep)} it trained on left out)")


def read_train_rows(registry: MlflowRegistry, info: ModelVersionInfo) -> dict[str, Any] | None:
    """The version's record of the rows it trained on, or None if it has none."""
    if not info.run_id:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = registry.download_artifacts(info.run_id, TRAIN_ROWS_ARTIFACT, tmp)
        except Exception:  # not recorded (an older version): say so in the report
            return None
        data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
        return data


def log_model_card(*, registry: MlflowRegistry, run_id: str, version: ModelVersionInfo,
                   spec: ProjectSpec, model: Any, holdout: pd.DataFrame, y: np.ndarray,
                   prediction: np.ndarray, metric: str, cv_metrics: Mapping[str, float],
                   gates: GateReport, facts: Mapping[str, str], data: Mapping[str, Any],
                   classes: tuple[str, ...]) -> None:
    """Build the version's model card and store it with the run under ``card/``."""
    card = build_model_card(CardInputs(
        model_name=version.name, version=version.version, task=spec.target.task,
        metric=metric, model=model, holdout=holdout, y=y, prediction=prediction,
        cv_metrics=cv_metrics, gates=gates, facts=facts, data=data, classes=classes,
        seed=spec.training.search.seed,
        contributions=contribution_importance(model, holdout, task=spec.target.task)))
    with tempfile.TemporaryDirectory() as tmp:
        card.write(tmp)
        registry.log_artifact_folder(run_id, tmp, CARD_FOLDER)
