"""The ``rollout:`` section of flywheel.yaml: the defaults of every traffic policy.

``flywheel rollout canary|shadow|ab|blue-green|bandit`` (and the retraining loop) start a
policy from these defaults, with any option given on the command line taking precedence.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from flywheel.core._section import Section as _Section

__all__ = [
    "ABSpec",
    "BanditSpec",
    "BlueGreenSpec",
    "CanarySpec",
    "OutcomeMetric",
    "RolloutKind",
    "RolloutLimits",
    "RolloutSpec",
    "ShadowSpec",
]

RolloutKind = Literal["canary", "shadow", "ab", "blue_green", "bandit"]
OutcomeMetric = Literal["auto", "accuracy", "conversion", "label", "abs_error", "squared_error"]
"""A per-request outcome read from feedback: accuracy (prediction equals the label),
conversion (the label is the positive class), label (the label as a number), abs_error and
squared_error (regression). auto: accuracy for classifiers, abs_error for regression."""


class RolloutLimits(_Section):
    """What a challenger may not exceed while it takes traffic; any breach rolls back at once."""

    max_error_rate: float = Field(0.01, ge=0.0, le=1.0)
    """Largest share of the challenger's calls that may fail or time out."""
    max_p99_latency_ms: float | None = Field(None, gt=0.0)
    """Absolute budget of the challenger's p99 request latency; null: only the relative one."""
    max_latency_ratio: float | None = Field(3.0, ge=1.0)
    """The challenger's p99 latency may be at most this multiple of the champion's, plus
    latency_slack_ms; null: off."""
    latency_slack_ms: float = Field(5.0, ge=0.0)
    """Added to the relative latency limit, so that sub-millisecond noise never breaches it."""
    max_divergence: float | None = Field(0.2, gt=0.0, le=1.0)
    """Largest Jensen-Shannon distance (0-1) between the challenger's and the champion's
    prediction distributions, counted only when a chi-square test also finds the difference
    significant at `alpha`; null: off."""
    max_metric_drop: float | None = Field(0.02, ge=0.0)
    """How much worse (in the metric's units) the challenger may be on labelled requests: a
    breach when the always-valid confidence interval of the gain lies wholly below -this;
    null: off (then no labels are needed)."""
    alpha: float = Field(0.01, gt=0.0, lt=0.5)
    """Error level of the statistical guards (error rate, divergence, metric)."""


class CanarySpec(_Section):
    stages: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0], min_length=1)
    """The challenger's share of traffic at each stage, in percent, increasing."""
    min_requests: int = Field(200, ge=1)
    """Challenger requests a stage needs before it can pass."""
    min_labels: int = Field(50, ge=0)
    """Labelled challenger requests a stage needs before it can pass (when the metric limit
    is on); 0: do not wait for labels."""
    metric: OutcomeMetric = "auto"
    """The labelled metric the max_metric_drop limit compares."""

    @field_validator("stages")
    @classmethod
    def _check_stages(cls, value: list[float]) -> list[float]:
        if any(not 0.0 < s <= 100.0 for s in value):
            raise ValueError("every stage must be a percentage in (0, 100]")
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError("stages must increase, such as [5, 25, 50, 100]")
        return value


class ShadowSpec(_Section):
    share: float = Field(1.0, gt=0.0, le=1.0)
    """Share of requests also sent to the challenger, off the response path."""
    min_requests: int = Field(500, ge=1)
    """Shadowed requests before the comparison is judged."""
    metric: OutcomeMetric = "auto"
    """Compared on labelled requests both answered (reported; the decision does not use it)."""
    min_agreement: float | None = Field(None, ge=0.0, le=1.0)
    """Fewest requests (share) where the challenger must give the champion's answer
    (classifiers; regression: within 10 % of it); null: report only."""
    then: Literal["stop", "canary", "promote"] = "stop"
    """After a clean shadow: stop (report only), start a canary, or promote."""


class ABSpec(_Section):
    split: float = Field(0.5, gt=0.0, lt=1.0)
    """The challenger's share of units."""
    metric: OutcomeMetric = "auto"
    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    """False-positive rate of the sequential test, valid however often it is looked at."""
    power: float = Field(0.8, ge=0.5, lt=1.0)
    """Chance of detecting a true difference of `mde`; sizes the test."""
    mde: float = Field(0.02, gt=0.0)
    """Minimum detectable effect, in the metric's units (0.02: two points of accuracy)."""
    baseline: float | None = None
    """The champion's metric, to size the test; null: from labelled requests in the
    prediction log, else the holdout, else the worst case."""
    max_samples: int | None = Field(None, ge=10)
    """Labelled requests per arm after which the test ends with no difference; null: the
    planned sample size."""
    on_no_difference: Literal["keep_champion", "promote"] = "keep_champion"


class BlueGreenSpec(_Section):
    warmup_rows: int = Field(50, ge=1)
    """Rows the new version must score (finite, in range, in time) before the switch."""
    bake_requests: int = Field(200, ge=0)
    """Requests watched against the limits after the switch; a breach switches back."""


class BanditSpec(_Section):
    floor: float = Field(0.05, ge=0.0, lt=0.5)
    """Smallest share of traffic each arm keeps."""
    metric: OutcomeMetric = "auto"
    """The reward; must lie in [0, 1] for the Beta posterior, else a normal one is used."""
    min_samples: int = Field(200, ge=1)
    """Labelled requests per arm before the bandit may decide."""
    decide_at: float | None = Field(0.95, gt=0.5, lt=1.0)
    """Promote an arm once it is best with this probability; null: run until stopped."""
    max_samples: int | None = Field(None, ge=10)
    """Labelled requests in all after which the likeliest-best arm wins; null: no limit."""


class RolloutSpec(_Section):
    default: RolloutKind = "canary"
    """The policy the retraining loop starts for a new challenger."""
    auto: bool = True
    """Decide automatically: the server runs the controller in one worker; false: decisions
    only on `flywheel rollout decide` (or the retraining loop)."""
    tick_seconds: float = Field(10.0, gt=0.0)
    """Seconds between decisions of the automatic controller."""
    unit_header: str = Field("x-flywheel-unit", min_length=1)
    """Request header whose value is hashed so that one unit (user) always sees one model."""
    unit_field: str | None = None
    """A record field hashed instead when the header is absent; null: random per request."""
    timeout_ms: float = Field(250.0, gt=0.0)
    """A challenger call slower than this counts as a timeout (the champion answers)."""
    limits: RolloutLimits = RolloutLimits()
    canary: CanarySpec = CanarySpec()
    shadow: ShadowSpec = ShadowSpec()
    ab: ABSpec = ABSpec()
    blue_green: BlueGreenSpec = BlueGreenSpec()
    bandit: BanditSpec = BanditSpec()

    @field_validator("unit_header")
    @classmethod
    def _lower_header(cls, value: str) -> str:
        return value.strip().lower()
