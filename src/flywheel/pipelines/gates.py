"""`flywheel gates VERSION --rerun`: gate a registered version again, against the spec and the
champion as they are now, and store the new results on it (tags and ``gates.json``), audited.

The rows it is judged on are the rows of the data (the spec's, or ``--data``) the version never
trained on: its training run recorded a hash of each row it trained on, so on the data it was
trained from these are exactly its holdout. The champion is scored on those of them it did not
train on either, as at training time.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flywheel.core.errors import ConfigError, RegistryError
from flywheel.evaluation import (
    GateReport,
    check_gates_config,
    compute_metrics,
    get_metric,
    predict_scores,
)
from flywheel.pipelines._compile import compile_for_serving
from flywheel.pipelines._gating import (
    GATES_ARTIFACT,
    gate_candidate,
    read_train_rows,
    row_hashes,
)
from flywheel.pipelines.promote import audit_log, recover, resolve_version
from flywheel.training import encode_target

if TYPE_CHECKING:
    from flywheel.pipelines._context import ProjectContext
    from flywheel.registry import AuditEntry, MlflowRegistry

__all__ = ["GATES_ALIAS", "GateRerun", "rerun_gates"]

GATES_ALIAS = "gates"
"""The audit log's ``alias`` for a re-run of a version's gates (from and to: the version)."""
_GATE_TAGS = "flywheel.gates."


@dataclasses.dataclass(frozen=True)
class GateRerun:
    """What a re-run found: the new report, the one it replaced, and its audit entry."""

    version: str
    report: GateReport
    before: str
    rows: int
    entry: AuditEntry


def rerun_gates(project: ProjectContext, version: str, *, data: str | Path | None = None,
                reason: str | None = None, registry: MlflowRegistry | None = None
                ) -> GateRerun:
    """Run the spec's gates again on registered ``version`` and store the results on it.

    Raises:
        ModelNotFoundError: If the version does not exist.
        RegistryError: If it has no record of its training rows (trained before it was kept).
        ConfigError: If the data has no row the version did not train on, lacks its columns,
            or its classes differ from the version's.
    """
    spec, schema = project.spec, project.schema
    metric = get_metric(spec.target.task, spec.training.metric).name
    check_gates_config(spec.gates, spec.target.task, metric)
    registry = registry or project.registry()
    with project.workspace.lock("registry", command=f"flywheel gates {version} --rerun"):
        recover(project, registry, lock_held=True)
        info = resolve_version(registry, version)
        record = read_train_rows(registry, info)
        if record is None or not info.run_id:
            raise RegistryError(
                f"version {info.version} has no record of the rows it trained on "
                "(evaluation/train_rows.json), so its holdout cannot be told apart; train a "
                "new version instead.")
        frame = project.load_data(data)
        source = str(data) if data is not None else spec.data.path
        features = schema.feature_columns
        missing = [c for c in [*record["columns"], *features, schema.target]
                   if c not in frame.columns]
        if missing:
            raise ConfigError(f"the data ({source}) lacks column(s) {sorted(set(missing))} "
                              f"that version {info.version} needs; pass the data it was "
                              "trained on with --data.")
        seen = np.frombuffer(base64.b64decode(record["hashes"]), dtype="<u8")
        unseen = ~np.isin(row_hashes(frame, list(record["columns"])), seen)
        holdout_rows = np.flatnonzero(unseen)
        if len(holdout_rows) == 0:
            raise ConfigError(f"every row of {source} was used to train version "
                              f"{info.version}, so none is left to gate it on; pass other "
                              "labelled rows with --data.")
        y, encoding = encode_target(frame[schema.target], spec.target)
        recorded = info.tags.get("flywheel.classes")
        if recorded and spec.target.task != "regression" and \
                tuple(json.loads(recorded)) != encoding.classes:
            raise ConfigError(f"version {info.version} was trained on classes "
                              f"{json.loads(recorded)}, the data has {list(encoding.classes)}; "
                              "pass data with the same classes with --data.")
        model = registry.load_model(info.version, allow_pickle=spec.training.allow_pickle)
        x_holdout = frame.iloc[holdout_rows][features].reset_index(drop=True)
        y_holdout = y[holdout_rows]
        prediction = predict_scores(model, x_holdout, spec.target.task)
        compiled, _ = compile_for_serving(model, schema, spec.target.task, x_holdout)
        trained = y[~unseen]
        target_range = (float(np.min(trained)), float(np.max(trained))) \
            if spec.target.task == "regression" and len(trained) else None
        report = gate_candidate(
            spec=spec, schema=schema, registry=registry, model=model, frame=frame,
            holdout_rows=holdout_rows, y_holdout=y_holdout, prediction=prediction,
            metric=metric, holdout_metrics=compute_metrics(spec.target.task, y_holdout,
                                                           prediction),
            cv_metrics=_cv_metrics(info.tags), classes=encoding.classes,
            target_range=target_range, compiled=compiled, version=info.version)
        before = info.tags.get(f"{_GATE_TAGS}summary", "no gate results recorded")
        new_tags = report.tags()
        stale = [k for k in info.tags if k.startswith(_GATE_TAGS) and k not in new_tags]
        registry.delete_version_tags(info.version, stale)
        registry.set_version_tags(info.version, new_tags)
        registry.log_artifact_text(info.run_id, GATES_ARTIFACT, report.to_json())
        champion = report.get("champion")
        entry = audit_log(project).append(
            action="gates_rerun", model=registry.model_name, alias=GATES_ALIAS,
            from_version=info.version, to_version=info.version,
            reason=(reason or "").strip() or "gates re-run against the current spec and champion",
            evidence={"version": info.version, "before": before, "after": report.summary(),
                      "passed": report.passed, "rows": int(len(holdout_rows)),
                      "data": source, "champion_gate": champion.reason if champion else None})
    return GateRerun(info.version, report, before, int(len(holdout_rows)), entry)


def _cv_metrics(tags: Mapping[str, str]) -> dict[str, float]:
    """The cross-validated metrics recorded on the version at training time."""
    out = {}
    for key, value in tags.items():
        if key.startswith("flywheel.cv_"):
            try:
                number = float(value)
            except ValueError:
                continue
            if math.isfinite(number):
                out[key.removeprefix("flywheel.cv_")] = number
    return out
