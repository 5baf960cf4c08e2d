"""Explanations in responses: ``POST /explain`` and ``"explain": true`` on ``/predict``.

Each row's explanation holds its raw score, the bias (the model's expected raw score) and one
contribution per raw input column, which add up to the raw score (LightGBM's, XGBoost's and
CatBoost's exact tree contributions, ``features/_contributions.py``). The raw score is the
positive class's log-odds for a binary model, one score per class (softmax input) for a
multiclass one, and the predicted value for regression (its log for a Poisson, Tweedie or gamma
loss).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flywheel.serving._http import HttpError

if TYPE_CHECKING:
    from flywheel.serving._models import ServedModel

__all__ = ["explain_flag", "explanations"]

EXPLAIN_KEY = "explain"


def explain_flag(body: Any, features: list[str]) -> tuple[Any, bool]:
    """The body without its ``explain`` key, and whether it asked for explanations.

    ``explain`` is read only from an object body (a record or ``{"columns": ...}``) of a
    model with no feature of that name.

    Raises:
        HttpError: 422 if ``explain`` is not true or false.
    """
    if not isinstance(body, dict) or EXPLAIN_KEY not in body or EXPLAIN_KEY in features:
        return body, False
    flag = body[EXPLAIN_KEY]
    if not isinstance(flag, bool):
        raise HttpError(422, "the input does not match the model's features", [
            {"loc": ["body", EXPLAIN_KEY], "msg": f"expected true or false, got {flag!r}"}])
    return {k: v for k, v in body.items() if k != EXPLAIN_KEY}, flag


def explanations(served: ServedModel, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``explained`` and ``explanations`` fields of a response for checked ``records``.

    Raises:
        HttpError: 409 if the version cannot be explained (the reason is in the message).
    """
    model = served.model
    explainer = model.explainer
    if explainer is None:
        raise HttpError(409, f"version {served.version} cannot be explained: "
                             f"{model.unexplained or 'no explainer is loaded'}; its predictions "
                             "still work on /predict")
    parts = explainer.explain_records(records)
    columns = parts.columns
    values, bias = parts.values.tolist(), parts.bias.tolist()
    if model.task == "regression" or parts.values.shape[1] == 1:
        if model.task == "regression":
            explained = ("the log of the predicted value" if explainer.log_link
                         else "the predicted value")
        else:
            explained = (f"the log-odds of {model.classes[-1]!r}" if model.classes
                         else "the log-odds")
        rows = [_output(v[0], b[0], columns) for v, b in zip(values, bias, strict=True)]
    else:
        explained = "each class's raw score (softmax input)"
        labels = list(model.classes) or [str(k) for k in range(parts.values.shape[1])]
        rows = [{"classes": {label: _output(per, base, columns)
                             for label, per, base in zip(labels, v, b, strict=True)}}
                for v, b in zip(values, bias, strict=True)]
    return {"explained": explained, "explanations": rows}


def _output(values: list[float], bias: float, columns: list[str]) -> dict[str, Any]:
    return {"raw_score": sum(values) + bias, "bias": bias,
            "contributions": dict(zip(columns, values, strict=True))}
