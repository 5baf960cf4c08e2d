"""Request bodies to records, checked against the model's schema before the model sees them.

Accepted bodies for ``/predict``: one record (a JSON object of feature values), a list of
records, or columnar ``{"columns": {"feature": [values...], ...}}``. Every problem is reported
(location and message), not only the first, in the schema's column order.

A number or boolean sent for a categorical feature whose categories are known is read as its
text (``415`` as ``"415"``, ``true`` as ``"true"``, the way training read them): when that text is
a known category the record carries it from then on; when it is not, the request is answered
(the model scores an unseen category) with a warning naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from flywheel.data import DataSchema

MAX_ROWS = 10_000
MAX_WARNINGS = 100
_NUMERIC = ("numeric", "integer")
_ACCEPTS: dict[str, frozenset[type]] = {
    "numeric": frozenset({int, float}), "integer": frozenset({int, float}),
    "categorical": frozenset({str, int, bool, float}), "boolean": frozenset({bool, int, str}),
    "datetime": frozenset({str})}
_TEXT = frozenset({str})


class InputProblems(ValueError):
    """The request is well-formed JSON but does not fit the model's inputs."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}"
                                   for p in problems[:5]))


class InputChecker:
    """Validates records for one schema; built once per model version."""

    def __init__(self, schema: DataSchema, *, max_rows: int = MAX_ROWS) -> None:
        self.joiner: Callable[[list[Any]], list[dict[str, Any]]] | None = None
        """Fills records with online features before they are checked (the feature store's
        lookup, for a model trained on feature views); returns problems with entity keys."""
        self.columns = schema.feature_columns
        self.expected = frozenset(self.columns)
        self.kinds = {name: schema.columns[name].kind for name in self.columns}
        self.max_rows = max_rows
        self.categories = {
            name: frozenset(schema.columns[name].categories or ()) for name in self.columns
            if self.kinds[name] == "categorical" and schema.columns[name].categories is not None}
        """Known categories of the categorical features that have a closed list."""
        # The types each column accepts without a second look (floats: if finite); anything
        # else goes through _type_problem for a verdict and a message. Categorical features
        # with known categories take only text that way: a number is compared as text.
        self._accepts = {name: _TEXT if name in self.categories else _ACCEPTS.get(kind)
                         for name, kind in self.kinds.items()}

    def records(self, body: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The records in a /predict body, and warnings about values the model reads as
        unseen categories.

        Raises:
            InputProblems: listing every missing, extra or mistyped field.
        """
        if isinstance(body, dict):
            if "columns" in body and len(body) == 1:
                rows = self._from_columns(body["columns"])
            else:
                rows = [body]
        elif isinstance(body, list):
            rows = body
        else:
            raise InputProblems([{"loc": ["body"], "msg": "expected a record (object), a list "
                                  "of records, or {\"columns\": {...}}"}])
        return rows, self.check(rows)

    def check(self, rows: list[Any], *, where: str = "records") -> list[dict[str, Any]]:
        """Check ``rows`` in place (numbers for known categories become their text).

        Returns:
            Warnings: values of categorical features that are not a known category.

        Raises:
            InputProblems: listing every missing, extra or mistyped field.
        """
        if not rows:
            raise InputProblems([{"loc": [where], "msg": "no records to predict"}])
        if len(rows) > self.max_rows:
            raise InputProblems([{"loc": [where], "msg": f"{len(rows)} records; at most "
                                  f"{self.max_rows} per request"}])
        if self.joiner is not None:
            joined = self.joiner(rows)
            if joined:
                raise InputProblems([{**p, "loc": [where, *p["loc"][1:]]} for p in joined])
        problems: list[dict[str, Any]] = []
        warnings: list[dict[str, Any]] = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                problems.append({"loc": [where, i], "msg": "expected an object of features"})
                continue
            keys = row.keys()
            if keys != self.expected:
                for name in self.columns:
                    if name not in keys:
                        problems.append({"loc": [where, i, name], "msg": "missing field"})
                for name in keys:
                    if name not in self.expected:
                        problems.append({"loc": [where, i, name], "msg": "unknown field; "
                                         "expected only the model's features"})
            accepts = self._accepts
            for name, value in row.items():
                kind_of = type(value)
                accepted = accepts.get(name)
                if accepted is not None and kind_of in accepted and (
                        kind_of is not float or value - value == 0.0):
                    continue
                if value is None or name not in self.kinds:
                    continue
                message = _type_problem(self.kinds[name], value)
                if message:
                    problems.append({"loc": [where, i, name], "msg": message})
                elif kind_of is not str and name in self.categories:
                    self._as_category(row, name, value, [where, i, name], warnings)
            if len(problems) > 100:
                break
        if problems:
            raise InputProblems(problems)
        return warnings

    def _as_category(self, row: dict[str, Any], name: str, value: Any, loc: list[Any],
                     warnings: list[dict[str, Any]]) -> None:
        """A number or boolean for a categorical feature: its text when that is a category."""
        text = category_text(value)
        known = self.categories[name]
        if text in known:
            row[name] = text
        elif len(warnings) < MAX_WARNINGS:
            examples = ", ".join(repr(c) for c in sorted(known)[:3])
            warnings.append({"loc": loc, "msg": f"{text!r} is not one of the {len(known)} known "
                             f"categories ({examples}, ...); scored as an unseen category"})

    def _from_columns(self, columns: Any) -> list[dict[str, Any]]:
        if not isinstance(columns, dict) or not all(isinstance(v, list) for v in columns.values()):
            raise InputProblems([{"loc": ["columns"], "msg": "expected an object mapping each "
                                  "feature to a list of values"}])
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise InputProblems([{"loc": ["columns"], "msg": f"columns have different lengths "
                                  f"{sorted(lengths)}"}])
        names = list(columns)
        return [dict(zip(names, values, strict=True))
                for values in zip(*columns.values(), strict=True)]


def category_text(value: Any) -> str:
    """A JSON number or boolean as training read it in a categorical column (``415.0`` and
    ``415`` as ``"415"``, ``true`` as ``"true"``)."""
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is float and value.is_integer():
        return str(int(value))
    return str(value)


def _type_problem(kind: str, value: Any) -> str | None:
    kind_of = type(value)
    if kind in _NUMERIC:
        if kind_of is bool or kind_of not in (int, float):
            return f"expected a number, got {_name(value)}"
        if kind_of is float and not math.isfinite(value):
            return "expected a finite number"
        return None
    if kind == "categorical":
        if kind_of in (str, int, bool):
            return None
        if kind_of is float:
            return None if math.isfinite(value) else "expected a finite number or text"
        return f"expected text or a number, got {_name(value)}"
    if kind == "boolean":
        if kind_of in (bool, int, str):
            return None
        return f"expected true or false, got {_name(value)}"
    if kind == "datetime":
        if kind_of is str:
            return None
        return f"expected an ISO-8601 date-time string, got {_name(value)}"
    return None


def _name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "a boolean"}.get(
        type(value), type(value).__name__)
