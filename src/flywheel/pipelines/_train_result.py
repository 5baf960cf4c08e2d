"""What one `flywheel train` produced."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from flywheel.evaluation import GateReport
from flywheel.pipelines._train_runs import PhaseClock
from flywheel.registry import ModelVersionInfo


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What one `flywheel train` produced."""

    version: ModelVersionInfo
    run_id: str
    study_name: str
    learner: str
    params: dict[str, Any]
    metric: str
    cv_metrics: dict[str, float]
    holdout_metrics: dict[str, float]
    trials: dict[str, int]
    """Counts of trials by state (complete, pruned, fail)."""
    rows: dict[str, int]
    """Rows used: search (cross-validated) and holdout."""
    data_fingerprint: str
    duration_s: float
    gates: GateReport | None = None
    """Every gate's result; the version's tags and gates.json hold the same."""
    promoted: bool = False
    """Whether promotion.auto made this version champion after it passed every gate."""
    card_error: str | None = None
    """Why the model card could not be written, if it could not (training still counts)."""
    registered: bool = True
    """False when the study already held its trials and its best model was registered as
    ``version``: nothing new was trained or registered."""
    phases: dict[str, float] = dataclasses.field(default_factory=dict)
    """Seconds per phase (validation, tracking, search, refit, gates, registration, card,
    promotion), in order."""
    resumed_trials: int = 0
    """Finished trials the study held from earlier runs (the search resumed it)."""
    new_trials: int = 0
    """Trials this run finished."""
    budget_s: float | None = None
    """The search's time budget; ``deadline_hit`` says whether it ended the search."""
    deadline_hit: bool = False
    notes: tuple[str, ...] = ()
    """What training found and did beyond the model: a resumed study, runs a killed training
    left open (now KILLED), why nothing was registered."""
    warnings: tuple[str, ...] = ()
    """Results that look too good to be true, naming the features (``_too_good``)."""


def nothing_new(version: ModelVersionInfo, study: str, finished: int, best_trial: int,
                 notes: list[str], clock: PhaseClock, started: float, *,
                 rows: tuple[int, int], fingerprint: str) -> TrainResult:
    """The result of a training with nothing to add: the version the study's best trial
    became, read back from its tags."""
    tags = version.tags

    def metrics(prefix: str) -> dict[str, float]:
        return {k[len(prefix):]: float(v) for k, v in tags.items() if k.startswith(prefix)}

    notes.append(f"study {study} already holds its {finished} trial(s), and its best (trial "
                 f"{best_trial}) is version {version.version}: nothing new to train, nothing "
                 "registered. Search further with --trials N (more than "
                 f"{finished}) or a new --seed, or register the same model again with "
                 "--register-again")
    return TrainResult(
        version=version, run_id=version.run_id or "", study_name=study,
        learner=tags.get("flywheel.learner", ""), params={}, metric=tags.get("flywheel.metric", ""),
        cv_metrics=metrics("flywheel.cv_"), holdout_metrics=metrics("flywheel.holdout_"),
        trials={"complete": 0, "pruned": 0, "fail": 0},
        rows={"search": rows[0], "holdout": rows[1]}, data_fingerprint=fingerprint,
        duration_s=time.monotonic() - started, registered=False, phases=clock.stop(),
        resumed_trials=finished, notes=tuple(notes),
    )
