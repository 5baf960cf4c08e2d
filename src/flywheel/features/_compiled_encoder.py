"""A fitted ``ColumnTransformer`` replayed from its learned state, without scikit-learn or pandas.

``compile_encoder`` walks ``transformers_`` branch by branch. Each branch must start with one of
the converters in ``_convert.py`` and continue with steps whose learned state it can copy:

    to_floats, to_bool_floats, to_datetime_parts
        then any of SimpleImputer (statistics_, add_indicator), StandardScaler (mean_, scale_),
        MissingIndicator (features_), in any order
    to_category_strings
        then one of OneHotEncoder (categories_, drop_idx_; unknown -> zeros),
        OrdinalEncoder (categories_; unknown -> unknown_value),
        TargetEncoder (categories_, encodings_; unknown -> target_mean_)

Anything else raises ``CompileError`` naming the step. Numeric outputs become short lists of
scalar operations (fill NaN, subtract and divide, test for NaN); categorical outputs become dict
lookups from category string to an output position (one-hot) or to a row of a table (ordinal and
target encodings, whose last row holds the value for unknown categories). The operations are the
ones scikit-learn performs, in the same order and in float64, so the output is bit-identical.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
    TargetEncoder,
)

from flywheel.core.errors import CompileError
from flywheel.features._compiled_values import (
    Column,
    read_bool,
    read_bool_column,
    read_category,
    read_category_column,
    read_datetime,
    read_datetime_column,
    read_float,
    read_float_column,
)
from flywheel.features._convert import (
    DATETIME_PARTS,
    to_bool_floats,
    to_category_strings,
    to_datetime_parts,
    to_floats,
)

__all__ = ["FeatureEncoder", "compile_encoder"]

_FILL, _SCALE, _IS_NAN = 0, 1, 2
Op = tuple[int, float, float]
"""(_FILL, value, _) replaces NaN; (_SCALE, mean, scale) is (x - mean) / scale; (_IS_NAN, _, _)."""

_SCALAR_READERS: dict[Any, tuple[Callable[[Any], float], Callable[[Column], np.ndarray]]] = {
    to_floats: (read_float, read_float_column),
    to_bool_floats: (read_bool, read_bool_column),
}


@dataclass
class _Numeric:
    """One numeric feature while a branch is walked: where it comes from, what is done to it."""

    column: str
    part: int  # index into DATETIME_PARTS, or -1 for a scalar reader
    ops: tuple[Op, ...] = ()

    def then(self, code: int, a: float = 0.0, b: float = 0.0) -> _Numeric:
        return _Numeric(self.column, self.part, (*self.ops, (code, a, b)))


@dataclass
class _Table:
    """A categorical column encoded by table lookup: category -> row; the last row is unknown."""

    column: str
    start: int
    index: dict[str, int]
    table: np.ndarray
    rows: list[tuple[float, ...]] = field(default_factory=list)


@dataclass
class FeatureEncoder:
    """Raw values to the feature matrix the fitted ``ColumnTransformer`` would produce."""

    columns: list[str]
    """Input columns read, in the order the transformer reads them."""
    names: list[str]
    """Output feature names, in output order."""
    scalars: list[tuple[str, Callable[[Any], float], Callable[[Column], np.ndarray],
                        tuple[tuple[int, tuple[Op, ...]], ...]]]
    """(column, value reader, column reader, ((position, ops), ...))."""
    dates: list[tuple[str, tuple[tuple[int, int, tuple[Op, ...]], ...]]]
    """(column, ((part, position, ops), ...))."""
    one_hots: list[tuple[str, dict[str, int]]]
    """(column, category -> output position); unknown and dropped categories write nothing."""
    tables: list[_Table]

    def __post_init__(self) -> None:
        self._template = [0.0] * len(self.names)

    @property
    def width(self) -> int:
        return len(self.names)

    def state(self) -> bytes:
        """The learned state, serialized: two encoders with equal ``state()`` encode every
        input to the same matrix bit for bit (floats are compared by their bits, so a -0.0
        or NaN that would not change the output still makes the states differ)."""
        tables = [(t.column, t.start, t.index, t.table, t.rows) for t in self.tables]
        try:
            return pickle.dumps((self.columns, self.names, self.scalars, self.dates,
                                 self.one_hots, tables), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError, TypeError):  # a reader not importable
            return f"unpicklable encoder {id(self)}".encode()  # equal to itself only

    def encode_record(self, record: Mapping[str, Any]) -> list[float]:
        """One record's feature row; absent keys are missing values, extra keys are ignored."""
        out = self._template.copy()  # a fresh row per call keeps concurrent callers apart
        get = record.get
        for column, read, _, slots in self.scalars:
            raw = read(get(column))
            for position, ops in slots:
                value = raw
                for code, a, b in ops:  # _apply, inlined: this loop is most of a row's work
                    if code == _FILL:
                        if value != value:
                            value = a
                    elif code == _SCALE:
                        value = (value - a) / b
                    else:
                        value = 1.0 if value != value else 0.0
                out[position] = value
        for column, dated in self.dates:
            parts = read_datetime(get(column))
            for part, position, ops in dated:
                out[position] = _apply(parts[part], ops)
        for column, positions in self.one_hots:
            hit = positions.get(read_category(get(column)))
            if hit is not None:
                out[hit] = 1.0
        for t in self.tables:
            row = t.rows[t.index.get(read_category(get(t.column)), -1)]
            out[t.start:t.start + len(row)] = row
        return out

    def encode_columns(self, columns: Mapping[str, Column], rows: int) -> np.ndarray:
        """A (rows, width) float64 matrix; a column absent from ``columns`` is all missing."""
        out = np.zeros((rows, self.width), dtype=np.float64)
        missing: list[None] = [None] * rows

        def values(column: str) -> Column:
            found = columns.get(column)
            return missing if found is None else found

        for column, _, read_column, slots in self.scalars:
            raw = read_column(values(column))
            for position, ops in slots:
                out[:, position] = _apply_array(raw, ops)
        for column, dated in self.dates:
            parts = read_datetime_column(values(column))
            for part, position, ops in dated:
                out[:, position] = _apply_array(parts[:, part], ops)
        categories: dict[str, list[str]] = {}
        for column in {c for c, _ in self.one_hots} | {t.column for t in self.tables}:
            categories[column] = read_category_column(values(column))
        for column, positions in self.one_hots:
            found = np.fromiter(map(positions.get, categories[column], repeat(-1)),
                                dtype=np.intp, count=rows)
            hit = np.flatnonzero(found >= 0)
            out[hit, found[hit]] = 1.0
        for t in self.tables:
            codes = np.fromiter(map(t.index.get, categories[t.column], repeat(-1)),
                                dtype=np.intp, count=rows)
            out[:, t.start:t.start + t.table.shape[1]] = t.table[codes]
        return out


def _apply(value: float, ops: tuple[Op, ...]) -> float:
    for code, a, b in ops:
        if code == _FILL:
            if value != value:
                value = a
        elif code == _SCALE:
            value = (value - a) / b
        else:
            value = 1.0 if value != value else 0.0
    return value


def _apply_array(values: np.ndarray, ops: tuple[Op, ...]) -> np.ndarray:
    for code, a, b in ops:
        if code == _FILL:
            values = np.where(np.isnan(values), a, values)
        elif code == _SCALE:
            values = (values - a) / b
        else:
            values = np.isnan(values).astype(np.float64)
    return values


def compile_encoder(ct: Any, *, where: str = "features") -> FeatureEncoder:
    """The ``FeatureEncoder`` that reproduces the fitted ``ct``.

    Raises:
        CompileError: If ``ct`` is not a fitted dense ``ColumnTransformer`` made of the steps
            listed in the module docstring.
    """
    if not isinstance(ct, ColumnTransformer):
        raise CompileError(where, type(ct).__name__, "expected a fitted ColumnTransformer")
    if not hasattr(ct, "transformers_"):
        raise CompileError(where, "ColumnTransformer", "it is not fitted")
    if getattr(ct, "sparse_output_", False):
        raise CompileError(where, "ColumnTransformer", "it outputs a sparse matrix")
    if ct.transformer_weights:
        raise CompileError(where, "ColumnTransformer", "transformer_weights are not supported")
    width = max((span.stop for span in ct.output_indices_.values()), default=0)
    try:
        names = [str(n) for n in ct.get_feature_names_out()]
    except (AttributeError, ValueError):  # a step without feature names: number them
        names = [f"feature_{i}" for i in range(width)]
    encoder = FeatureEncoder(columns=[], names=names, scalars=[], dates=[], one_hots=[],
                             tables=[])
    scalars: dict[tuple[str, Any], list[tuple[int, tuple[Op, ...]]]] = {}
    dates: dict[str, list[tuple[int, int, tuple[Op, ...]]]] = {}
    for name, transformer, selection in ct.transformers_:
        span = ct.output_indices_[name]
        step = f"{where}/{name}"
        if (isinstance(transformer, str) and transformer == "drop") or span.stop == span.start:
            continue
        if isinstance(transformer, str):
            raise CompileError(step, repr(transformer), "only fitted transformers and 'drop' "
                               "are supported, so every column goes through a converter")
        columns = _selected_columns(selection, step)
        for column in columns:
            if column not in encoder.columns:
                encoder.columns.append(column)
        # A lone transformer (sklearn turns "passthrough" into one) is named by its branch.
        steps = transformer.steps if isinstance(transformer, Pipeline) else [("", transformer)]
        converter, outputs = _walk(steps, columns, step)
        width = sum(_width(o) for o in outputs)
        if width != span.stop - span.start:
            raise CompileError(step, type(transformer).__name__,
                               f"it outputs {span.stop - span.start} features but its fitted "
                               f"steps account for {width}")
        position = span.start
        for output in outputs:
            if isinstance(output, _Numeric):
                if output.part < 0:
                    key = (output.column, converter)
                    scalars.setdefault(key, []).append((position, output.ops))
                else:
                    dates.setdefault(output.column, []).append(
                        (output.part, position, output.ops))
            elif isinstance(output, _Table):
                output.start = position
                encoder.tables.append(output)
            else:  # one-hot: (column, category -> offset, width)
                column, offsets, _ = output
                encoder.one_hots.append(
                    (column, {c: position + i for c, i in offsets.items()}))
            position += _width(output)
    for (column, converter), slots in scalars.items():
        read, read_column = _SCALAR_READERS[converter]
        encoder.scalars.append((column, read, read_column, tuple(slots)))
    encoder.dates = [(column, tuple(slots)) for column, slots in dates.items()]
    return encoder


def _selected_columns(selection: Any, step: str) -> list[str]:
    columns = list(selection) if isinstance(selection, (list, tuple, np.ndarray)) else None
    if columns is None or not all(isinstance(c, str) for c in columns):
        raise CompileError(step, "column selection", f"columns must be a list of names, got "
                           f"{selection!r}")
    return columns


_Output = Any  # _Numeric | _Table | tuple[str, dict[str, int], int] (one-hot)


def _width(output: _Output) -> int:
    if isinstance(output, _Numeric):
        return 1
    if isinstance(output, _Table):
        return int(output.table.shape[1])
    return int(output[2])


def _walk(steps: Sequence[tuple[str, Any]], columns: list[str],
          where: str) -> tuple[Any, list[_Output]]:
    """A branch's converter and its outputs, in order, from its fitted steps."""
    steps = [(n, s) for n, s in steps if s is not None and not (isinstance(s, str)
                                                                and s == "passthrough")]
    if not steps:
        raise CompileError(where, "empty pipeline", "a branch must start with a converter")
    first_name, first = steps[0]
    func = getattr(first, "func", None) if isinstance(first, FunctionTransformer) else None
    if func is None or func not in (to_floats, to_bool_floats, to_datetime_parts,
                                    to_category_strings):
        raise CompileError(_at(where, first_name), _describe(first),
                           "a branch must start with a FunctionTransformer holding one of the "
                           "converters in flywheel.features._convert")
    if first.validate or first.kw_args:
        raise CompileError(_at(where, first_name), _describe(first),
                           "validate=True and kw_args change what the converter sees")
    rest = steps[1:]
    if func is to_category_strings:
        if len(rest) != 1:
            raise CompileError(where, "categorical branch", "to_category_strings must be "
                               "followed by exactly one encoder (one-hot, ordinal or target)")
        name, encoder = rest[0]
        return func, _categorical(encoder, columns, _at(where, name))
    features: list[_Numeric]
    if func is to_datetime_parts:
        features = [_Numeric(c, p) for c in columns for p in range(len(DATETIME_PARTS))]
    else:
        features = [_Numeric(c, -1) for c in columns]
    for name, step in rest:
        features = _numeric_step(step, features, _at(where, name))
    return func, list(features)


def _numeric_step(step: Any, features: list[_Numeric], where: str) -> list[_Numeric]:
    n = len(features)
    if isinstance(step, SimpleImputer):
        _check_nan_marker(step, where)
        stats = _floats(step, "statistics_", n, where)
        kept = [f.then(_FILL, s) for f, s in zip(features, stats, strict=True)
                if step.keep_empty_features or s == s]
        if step.add_indicator:
            kept += _indicated(step.indicator_, features, f"{where}/indicator_")
        return kept
    if isinstance(step, StandardScaler):
        mean = _floats(step, "mean_", n, where) if step.with_mean else [0.0] * n
        scale = _floats(step, "scale_", n, where) if step.with_std else [1.0] * n
        return [f.then(_SCALE, m, s) for f, m, s in zip(features, mean, scale, strict=True)]
    if isinstance(step, MissingIndicator):
        return _indicated(step, features, where)
    raise CompileError(where, _describe(step), "not a step the fast path knows; numeric "
                       "branches support SimpleImputer, StandardScaler and MissingIndicator")


def _indicated(indicator: Any, features: list[_Numeric], where: str) -> list[_Numeric]:
    if not isinstance(indicator, MissingIndicator):
        raise CompileError(where, _describe(indicator), "expected a MissingIndicator")
    _check_nan_marker(indicator, where)
    return [features[int(i)].then(_IS_NAN) for i in indicator.features_]


def _categorical(encoder: Any, columns: list[str], where: str) -> list[_Output]:
    if isinstance(encoder, (OneHotEncoder, OrdinalEncoder)) and (
            encoder.max_categories is not None or encoder.min_frequency is not None):
        raise CompileError(where, _describe(encoder), "infrequent categories "
                           "(max_categories, min_frequency) are not supported")
    # Only text categories can match what to_category_strings produces; others keep their
    # position (their output column) but no lookup key, as sklearn would never match them.
    categories = [list(cats) for cats in encoder.categories_] \
        if hasattr(encoder, "categories_") else None
    if categories is None or len(categories) != len(columns):
        raise CompileError(where, _describe(encoder), "expected a fitted encoder with one "
                           "list of categories per column")
    if isinstance(encoder, OneHotEncoder):
        if encoder.handle_unknown == "error":
            raise CompileError(where, _describe(encoder), "handle_unknown='error' raises on "
                               "unseen categories; the fast path would encode them as zeros")
        drops = encoder.drop_idx_ if encoder.drop_idx_ is not None else [None] * len(columns)
        outputs: list[_Output] = []
        for column, cats, drop in zip(columns, categories, drops, strict=True):
            kept = [c for i, c in enumerate(cats) if drop is None or i != int(drop)]
            outputs.append((column, _index(kept), len(kept)))
        return outputs
    if isinstance(encoder, OrdinalEncoder):
        if encoder.handle_unknown != "use_encoded_value":
            raise CompileError(where, _describe(encoder), "handle_unknown='error' raises on "
                               "unseen categories; use handle_unknown='use_encoded_value'")
        unknown = float(encoder.unknown_value)
        return [_table(column, cats, np.arange(len(cats), dtype=np.float64)[:, None],
                       np.array([unknown]))
                for column, cats in zip(columns, categories, strict=True)]
    if isinstance(encoder, TargetEncoder):
        multiclass = encoder.target_type_ == "multiclass"
        k = len(encoder.classes_) if multiclass else 1
        encodings = encoder.encodings_
        if len(encodings) != k * len(columns):
            raise CompileError(where, _describe(encoder), "encodings_ does not match the "
                               "columns and classes")
        mean = np.asarray(encoder.target_mean_, dtype=np.float64).reshape(-1)
        return [_table(column, cats,
                       np.column_stack([np.asarray(encodings[i * k + j], dtype=np.float64)
                                        for j in range(k)]), mean)
                for i, (column, cats) in enumerate(zip(columns, categories, strict=True))]
    raise CompileError(where, _describe(encoder), "categorical branches support OneHotEncoder, "
                       "OrdinalEncoder and TargetEncoder")


def _table(column: str, categories: list[Any], values: np.ndarray,
           unknown: np.ndarray) -> _Table:
    table = np.vstack([values, unknown.reshape(1, -1)])
    return _Table(column=column, start=-1, index=_index(categories),
                  table=table, rows=[tuple(float(v) for v in row) for row in table])


def _index(categories: list[Any]) -> dict[str, int]:
    return {str(c): i for i, c in enumerate(categories) if isinstance(c, str)}


def _floats(step: Any, attribute: str, n: int, where: str) -> list[float]:
    try:
        values = np.asarray(getattr(step, attribute), dtype=np.float64).reshape(-1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise CompileError(where, _describe(step), f"cannot read {attribute} as floats "
                           f"({exc})") from exc
    if values.shape[0] != n:
        raise CompileError(where, _describe(step), f"{attribute} has {values.shape[0]} "
                           f"values for {n} features")
    return [float(v) for v in values]


def _check_nan_marker(step: Any, where: str) -> None:
    marker = step.missing_values
    if not (isinstance(marker, float) and marker != marker):
        raise CompileError(where, _describe(step), f"missing_values={marker!r}; only NaN "
                           "marks missing values after the converters")


def _at(where: str, name: str) -> str:
    return f"{where}/{name}" if name else where


def _describe(step: Any) -> str:
    if isinstance(step, FunctionTransformer):
        if step.func is None:
            return "passthrough"
        func = getattr(step.func, "__qualname__", repr(step.func))
        return f"FunctionTransformer({func})"
    return type(step).__name__
