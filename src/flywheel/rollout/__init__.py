"""Rollouts: traffic policies, sequential statistics, and the promote/rollback decision.

The pieces here are pure: policies (what a rollout does), its state (stored in the registry
beside the aliases), evidence computed from prediction-log rows, and the decision taken from
them. ``flywheel.pipelines.rollout`` puts them to work: it starts and stops rollouts and runs
the controller that reads the log, decides and applies (promote, rollback, next stage).

    from flywheel.pipelines.rollout import RolloutController, start_rollout
    start_rollout(project, "canary", "3")
    decision = RolloutController(project).tick()
"""

from __future__ import annotations

from flywheel.rollout._bandit import BanditWeights, thompson_weights
from flywheel.rollout._decide import Decision, HealthCheck, decide
from flywheel.rollout._evidence import ArmEvidence, Evidence, ShadowEvidence, gather_evidence
from flywheel.rollout._limits import LimitCheck, check_limits
from flywheel.rollout._outcomes import BINARY_METRICS, GREATER_IS_BETTER, outcome_values
from flywheel.rollout._policies import (
    KINDS,
    ABPolicy,
    BanditPolicy,
    BlueGreenPolicy,
    CanaryPolicy,
    Policy,
    ShadowPolicy,
    policy_from_spec,
)
from flywheel.rollout._sequential import (
    ArmSample,
    SamplePlan,
    SequentialTest,
    msprt,
    plan_sample_size,
)
from flywheel.rollout._state import (
    STATE_TAG,
    RolloutState,
    Route,
    Traffic,
    new_state,
    parse_state,
)

__all__ = [
    "BINARY_METRICS",
    "GREATER_IS_BETTER",
    "KINDS",
    "STATE_TAG",
    "ABPolicy",
    "ArmEvidence",
    "ArmSample",
    "BanditPolicy",
    "BanditWeights",
    "BlueGreenPolicy",
    "CanaryPolicy",
    "Decision",
    "Evidence",
    "HealthCheck",
    "LimitCheck",
    "Policy",
    "RolloutState",
    "Route",
    "SamplePlan",
    "SequentialTest",
    "ShadowEvidence",
    "ShadowPolicy",
    "Traffic",
    "check_limits",
    "decide",
    "gather_evidence",
    "msprt",
    "new_state",
    "outcome_values",
    "plan_sample_size",
    "parse_state",
    "policy_from_spec",
    "thompson_weights",
]
