"""What every section of flywheel.yaml is built from: a frozen pydantic model, and the one
"metric op number" condition that gates, alert rules and retraining triggers share."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Condition", "ConditionOp", "Section", "parse_bound"]


class Section(BaseModel):
    """A section of the spec: frozen, unknown keys refused, attribute docstrings as help."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


ConditionOp = Literal[">=", ">", "<=", "<"]

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_BOUND = re.compile(rf"^\s*(>=|<=|>|<)\s*({_NUMBER})\s*$")
_CONDITION = re.compile(rf"^\s*([A-Za-z_][\w.:/-]*)\s*(>=|<=|>|<)\s*({_NUMBER})\s*$")


def parse_bound(metric: str, text: object) -> dict[str, Any]:
    """``{"metric", "op", "value"}`` from a bound written as ``">= 0.80"``.

    Raises:
        ValueError: If ``text`` is not an operator and a number.
    """
    found = _BOUND.match(str(text))
    if found is None:
        raise ValueError(f"{metric}: must look like \">= 0.80\" (>=, >, <= or < and a number), "
                         f"got {text!r}")
    return {"metric": metric, "op": found.group(1), "value": float(found.group(2))}


class Condition(Section):
    """A metric compared with a number, such as ``roc_auc >= 0.80`` or ``drift_share > 0.3``.

    Written as that text or as a mapping {metric, op, value}; parsed with a regular expression,
    never evaluated as code.
    """

    metric: str = Field(min_length=1)
    op: ConditionOp
    value: float

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, raw: Any) -> Any:
        if not isinstance(raw, str):
            return raw
        found = _CONDITION.match(raw)
        if found is None:
            raise ValueError(f"must look like \"drift_share > 0.3\" (a metric name, one of >, "
                             f">=, <, <= and a number), got {raw!r}")
        return {"metric": found.group(1), "op": found.group(2), "value": float(found.group(3))}

    def holds(self, value: float) -> bool:
        """True if ``value`` satisfies the condition (NaN never does)."""
        if value != value:
            return False
        if self.op == ">":
            return value > self.value
        if self.op == ">=":
            return value >= self.value
        if self.op == "<":
            return value < self.value
        return value <= self.value

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"
