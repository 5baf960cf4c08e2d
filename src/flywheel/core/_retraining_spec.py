"""The ``retraining:`` section of flywheel.yaml: when the loop retrains, on what data, and how
the new version reaches traffic.

Triggers are rules on the metrics of the latest monitoring window (the same form as alert
rules, ``dataset_drift > 0``), a cron schedule, and an amount of new labelled traffic; one
cool-down spaces all of them so one event does not retrain twice.
"""

from __future__ import annotations

from typing import Literal

from croniter import croniter
from pydantic import Field, field_validator

from flywheel.core._monitoring_spec import RuleSpec
from flywheel.core._section import Section as _Section

__all__ = ["RetrainingSpec"]


class RetrainingSpec(_Section):
    enabled: bool = True
    """Let `flywheel loop` retrain; false: it only monitors and drives running rollouts."""
    triggers: list[RuleSpec] = Field(default_factory=lambda: [
        RuleSpec(metric="dataset_drift", op=">", value=0),
        RuleSpec(metric="multivariate_drift", op=">", value=0),
        RuleSpec(metric="out_of_range_rate_max", op=">", value=0.05),
        RuleSpec(metric="unseen_category_rate_max", op=">", value=0.05),
        RuleSpec(metric="roc_auc_drop", op=">", value=0.05),
        RuleSpec(metric="estimated_roc_auc_drop", op=">", value=0.05),
    ])
    """Rules on the latest window's monitoring metrics (see `flywheel monitor --json`); any
    that holds triggers retraining. A rule the window cannot evaluate is skipped. The defaults
    need no labels: data-set and multivariate drift, and inputs beyond what the model saw
    (over 5 % of a column outside the training range or of unseen categories). A missing
    column or a surge of nulls alerts (monitoring.alerts.rules) but does not retrain: a model
    fitted to broken inputs would learn the breakage."""
    schedule: str | None = None
    """Also retrain on this cron schedule (five fields, UTC), such as "0 3 * * 0"."""
    new_labels: int | None = Field(None, ge=1)
    """Also retrain once this many labelled production rows arrived since the last training."""
    cooldown_hours: float = Field(24.0, ge=0.0)
    """Least time between two retrainings, whatever triggers them."""
    window_rows: int = Field(5000, ge=50)
    """Rows of the prediction log each check monitors (the latest)."""
    min_window_rows: int = Field(500, ge=1)
    """A check with fewer new rows than this is skipped (too little evidence)."""
    data_days: float | None = Field(90.0, gt=0.0)
    """Labelled production rows from this many days back (event time) join the training
    data; null: all of them."""
    data_rows: int | None = Field(None, ge=1)
    """At most this many of the latest labelled production rows; null: no limit."""
    min_labels: int = Field(200, ge=0)
    """Labelled production rows needed before a retraining is attempted."""
    include_training_data: bool = True
    """Keep the original training data in every retraining."""
    trials: int | None = Field(None, ge=1)
    """Search trials per retraining; null: training.search.trials."""
    timeout_seconds: float | None = Field(None, gt=0)
    """Search time budget per retraining; null: training.search.timeout_seconds."""
    rollout: Literal["canary", "shadow", "ab", "blue_green", "bandit", "none"] = "canary"
    """How a retrained version that passed its gates reaches traffic (the `rollout:`
    section's defaults); none: it is promoted at once."""
    interval_seconds: float = Field(60.0, gt=0.0)
    """`flywheel loop`: seconds between ticks."""

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"must be a five-field cron expression such as \"0 3 * * 0\", "
                             f"got {value!r}")
        return value
