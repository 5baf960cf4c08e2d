"""Bodies of ``POST /feedback`` to (request id, label) pairs, checked against the served models.

Accepted: one ``{"request_id": ..., "label": ...}``, a list of them (empty too), or
``{"feedback": [...]}``. For a classifier a label must be one of its classes; a number or
boolean is read as its text (``1`` as ``"1"``), as the inputs are. For a regression model a
label is a finite number (or its text). Labels are checked against every loaded version, so
feedback for a request a challenger or a rollout arm answered is accepted too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flywheel.serving._inputs import InputProblems, category_text

if TYPE_CHECKING:
    from flywheel.serving._models import ServedModel

__all__ = ["feedback_items"]


def feedback_items(body: Any, models: Iterable[ServedModel]) -> list[tuple[str, Any]]:
    """The (request id, label) pairs of a feedback body, labels as the model spells them.

    Raises:
        InputProblems: Listing each item that is malformed or whose label the models cannot
            have predicted.
    """
    if isinstance(body, list):
        items = body
    elif isinstance(body, dict) and set(body) == {"feedback"}:
        items = body["feedback"]
    elif isinstance(body, dict):
        items = [body]
    else:
        items = None
    if not isinstance(items, list):
        raise InputProblems([{"loc": ["body"], "msg": 'expected {"request_id": ..., "label": '
                              '...}, a list of them, or {"feedback": [...]}'}])
    classes: set[str] = set()
    regression = False
    for served in models:
        if served.model.task == "regression":
            regression = True
        else:
            classes.update(served.model.classes)
    problems: list[dict[str, Any]] = []
    pairs: list[tuple[str, Any]] = []
    for i, item in enumerate(items):
        where: list[Any] = ["feedback", i]
        if not isinstance(item, dict) or set(item) != {"request_id", "label"}:
            problems.append({"loc": where, "msg": "expected exactly request_id and label"})
            continue
        request_id, label = item["request_id"], item["label"]
        if not isinstance(request_id, str) or not request_id:
            problems.append({"loc": [*where, "request_id"], "msg": "expected text"})
            continue
        read, message = _label(label, classes, regression)
        if message is not None:
            problems.append({"loc": [*where, "label"], "msg": message})
            continue
        pairs.append((request_id, read))
    if problems:
        raise InputProblems(problems[:100])
    return pairs


def _label(label: Any, classes: set[str], regression: bool) -> tuple[Any, str | None]:
    """The label as the model spells it, or a message saying why it cannot be one."""
    if label is None or isinstance(label, dict | list):
        return None, "expected a label (text or number)"
    if classes:
        if type(label) is str:
            text = label
        elif type(label) is float and not math.isfinite(label):
            text = ""
        else:
            text = category_text(label)
        if text in classes:
            return text, None
        if not regression:
            shown = ", ".join(repr(c) for c in sorted(classes)[:20])
            return None, f"{label!r} is not a class of the model; expected one of {shown}"
    if regression:
        value = label
        if type(label) is str:
            try:
                value = float(label)
            except ValueError:
                value = None
        if type(value) in (int, float) and math.isfinite(value):
            return value, None
        return None, f"expected a finite number (the model predicts values), got {label!r}"
    return label, None  # no model loaded: nothing to check against
