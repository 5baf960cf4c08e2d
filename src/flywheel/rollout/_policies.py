"""Traffic policies: what a rollout does, as frozen pydantic models with a ``kind``.

Each policy is its ``rollout:`` spec section plus the settings every kind shares (limits, the
unit key, the challenger timeout, the metric's positive label). A policy is stored, whole,
in the rollout state in the registry, so every server and the controller read the same one;
changing flywheel.yaml mid-rollout does not change a running rollout.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flywheel.core.errors import RolloutError
from flywheel.core.spec import (
    ABSpec,
    BanditSpec,
    BlueGreenSpec,
    CanarySpec,
    OutcomeMetric,
    RolloutKind,
    RolloutLimits,
    RolloutSpec,
    ShadowSpec,
    Task,
    format_validation_errors,
)

__all__ = [
    "KINDS",
    "ABPolicy",
    "BanditPolicy",
    "BlueGreenPolicy",
    "CanaryPolicy",
    "Policy",
    "ShadowPolicy",
    "policy_from_spec",
    "resolve_metric",
]

KINDS: tuple[RolloutKind, ...] = ("canary", "shadow", "ab", "blue_green", "bandit")


class _Common(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    limits: RolloutLimits = RolloutLimits()
    unit_header: str = "x-flywheel-unit"
    unit_field: str | None = None
    timeout_ms: float = Field(250.0, gt=0.0)
    positive: str | None = None
    """The label counted as a success by the conversion metric."""


class CanaryPolicy(CanarySpec, _Common):
    """Staged weights; each stage passes on enough clean evidence, any breach rolls back."""

    kind: Literal["canary"] = "canary"


class ShadowPolicy(ShadowSpec, _Common):
    """A share of requests also scored by the challenger, off the response path."""

    kind: Literal["shadow"] = "shadow"


class ABPolicy(ABSpec, _Common):
    """A fixed sticky split and an always-valid sequential test on a feedback metric."""

    kind: Literal["ab"] = "ab"


class BlueGreenPolicy(BlueGreenSpec, _Common):
    """Warm up and health-check the new version, switch all traffic, watch, switch back."""

    kind: Literal["blue_green"] = "blue_green"


class BanditPolicy(BanditSpec, _Common):
    """Thompson sampling across two or more versions on a feedback reward."""

    kind: Literal["bandit"] = "bandit"
    arms: tuple[str, ...] = Field(min_length=2)
    """The versions competing (the champion's included)."""

    @field_validator("arms")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("each arm must be a different version")
        return value


Policy = Annotated[CanaryPolicy | ShadowPolicy | ABPolicy | BlueGreenPolicy | BanditPolicy,
                   Field(discriminator="kind")]

_CLASSES: dict[str, type[BaseModel]] = {
    "canary": CanaryPolicy, "shadow": ShadowPolicy, "ab": ABPolicy,
    "blue_green": BlueGreenPolicy, "bandit": BanditPolicy,
}


def resolve_metric(metric: OutcomeMetric, task: Task) -> OutcomeMetric:
    """``auto`` as the task's default: accuracy for classifiers, abs_error for regression.

    Raises:
        RolloutError: If the metric does not fit the task.
    """
    if metric == "auto":
        return "abs_error" if task == "regression" else "accuracy"
    if task == "regression" and metric in ("accuracy", "conversion"):
        raise RolloutError(f"the metric {metric!r} needs a classifier, but this model is a "
                           "regression; use abs_error, squared_error or label.")
    if task != "regression" and metric in ("abs_error", "squared_error"):
        raise RolloutError(f"the metric {metric!r} needs a regression model, but this one is "
                           f"a {task} classifier; use accuracy, conversion or label.")
    return metric


def policy_from_spec(kind: str, spec: RolloutSpec, *, task: Task,
                     positive: str | None = None,
                     overrides: dict[str, Any] | None = None) -> Any:
    """The ``kind`` policy: the spec's defaults, then ``overrides`` (None values ignored).

    Dotted keys reach into limits (``{"limits.max_error_rate": 0.05}``).

    Raises:
        RolloutError: If the kind is unknown, an override breaks a rule, or the metric does
            not fit the task.
    """
    if kind not in _CLASSES:
        raise RolloutError(f"unknown rollout kind {kind!r}; choose one of "
                           f"{', '.join(KINDS)}.")
    raw: dict[str, Any] = {**getattr(spec, kind).model_dump(),
                           "limits": spec.limits.model_dump(), "unit_header": spec.unit_header,
                           "unit_field": spec.unit_field, "timeout_ms": spec.timeout_ms,
                           "positive": positive}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key.startswith("limits."):
            raw["limits"][key.removeprefix("limits.")] = value
        else:
            raw[key] = value
    model = _CLASSES[kind]
    try:
        policy = model.model_validate(raw)
    except ValidationError as exc:
        problems = format_validation_errors(exc, model)
        raise RolloutError(f"the {kind} policy is not valid:\n" +
                           "\n".join(f"  - {p}" for p in problems)) from None
    metric = getattr(policy, "metric", None)
    if metric is not None:
        resolved = resolve_metric(metric, task)
        if resolved == "conversion" and not getattr(policy, "positive", None):
            raise RolloutError("the conversion metric counts labels equal to the positive "
                               "class, but the spec names none; set target.positive_class.")
        policy = policy.model_copy(update={"metric": resolved})
    return policy
