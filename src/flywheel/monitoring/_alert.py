"""One alert: a rule that held for one window, as every sink receives it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from flywheel.monitoring._rules import RuleOutcome

__all__ = ["Alert"]


@dataclasses.dataclass(frozen=True)
class Alert:
    """A rule that held for one window."""

    rule: str
    metric: str
    value: float
    op: str
    threshold: float
    severity: str
    model: str
    version: str
    window: str
    at: str

    @property
    def key(self) -> str:
        """What repeats share: the model and the rule."""
        return f"{self.model}|{self.rule}"

    @property
    def message(self) -> str:
        return (f"[{self.severity}] {self.model} v{self.version}: {self.metric} = "
                f"{self.value:.4g} ({self.rule}) over {self.window}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"message": self.message}

    @classmethod
    def from_outcome(cls, outcome: RuleOutcome, *, model: str, version: str, window: str
                     ) -> Alert:
        rule = outcome.rule
        return cls(rule=str(rule), metric=rule.metric, value=float(outcome.value or 0.0),
                   op=rule.op, threshold=rule.value, severity=rule.severity, model=model,
                   version=version, window=window,
                   at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
