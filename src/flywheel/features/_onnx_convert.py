"""A fitted model pipeline as one ONNX graph: skl2onnx for the feature steps, onnxmltools'
LightGBM converter (registered with skl2onnx) for the booster.

The graph's inputs are the values the pipeline's stateless first steps read (``_convert.py``),
one input per raw column: ``double [N, 1]`` for numeric, integer and boolean columns (booleans
as 1.0/0.0, missing as NaN), ``string [N, 1]`` for categorical ones (missing as
``"__missing__"``), and for a datetime column ``c`` four ``double [N, 1]`` inputs
``c__hour``, ``c__day_of_week``, ``c__month``, ``c__day_of_month`` (UTC). Reading raw text
into those values stays in Python (``OnnxPredictor`` does it with the compiled path's readers);
everything learned (imputers, scalers, encoders, missing indicators, the booster) is in the
graph.

skl2onnx has no converter for the conversion functions, for ``MissingIndicator``, nor an
onnxruntime kernel for its double ``Imputer``; the converters below fill those gaps. onnx,
skl2onnx and onnxmltools are imported only when a conversion runs.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from flywheel.core.errors import OnnxExportError
from flywheel.core.spec import Task
from flywheel.data import DataSchema
from flywheel.features._convert import (
    DATETIME_PARTS,
    to_bool_floats,
    to_category_strings,
    to_datetime_parts,
    to_floats,
)

__all__ = ["INPUT_READERS", "METADATA_INPUTS", "METADATA_TASK", "OPSET", "convert_to_onnx",
           "onnx_inputs", "part_input"]

METADATA_INPUTS = "flywheel.inputs"
"""Graph metadata key: JSON of raw column -> how it is read (float, bool, category, datetime)."""
METADATA_TASK = "flywheel.task"

OPSET = {"": 17, "ai.onnx.ml": 3}
"""ONNX opsets the graph uses (onnxruntime 1.18 and later run them)."""

INPUT_READERS: dict[Callable[..., Any], str] = {
    to_floats: "float", to_bool_floats: "bool", to_category_strings: "category",
    to_datetime_parts: "datetime",
}
"""The conversion functions the graph accepts as a branch's first step, by how the input is
read."""


def part_input(column: str, part: str) -> str:
    """The ONNX input name of one part of datetime column ``column``."""
    return f"{column}__{part}"


def onnx_inputs(model: Any) -> dict[str, str]:
    """Raw column -> how it is read (float, bool, category, datetime), in branch order.

    Raises:
        OnnxExportError: If a branch does not start with one of flywheel's conversion steps.
    """
    features = model.steps[0][1]
    reads: dict[str, str] = {}
    for name, branch, columns in features.transformers_:
        if name == "remainder" or branch == "drop":
            continue
        steps = getattr(branch, "steps", [])
        first = steps[0][1] if steps else branch
        read = INPUT_READERS.get(getattr(first, "func", None))  # type: ignore[arg-type]
        if read is None:
            raise OnnxExportError(f"{model.steps[0][0]}/{name}", type(first).__name__,
                                  "the branch does not start with one of flywheel's conversion "
                                  "steps (to_floats, to_category_strings, to_bool_floats, "
                                  "to_datetime_parts), so its inputs are unknown")
        for column in columns:
            reads.setdefault(str(column), read)
    return reads


def convert_to_onnx(model: Any, schema: DataSchema, *, task: Task) -> bytes:
    """The serialized ONNX graph of a fitted ``Pipeline([("features", ...), ("model", ...)])``.

    Classifiers output ``label`` (int64 class codes) and ``probabilities`` (rows, classes);
    regressors output ``variable`` (rows, 1).

    Raises:
        OnnxExportError: Naming the step, if a step has no converter or conversion fails.
    """
    _register_converters()
    from skl2onnx import convert_sklearn

    if not hasattr(model, "steps") or len(model.steps) != 2:
        raise OnnxExportError("model", type(model).__name__, "expected a fitted Pipeline of "
                              "flywheel's feature step and an estimator")
    _check_steps(model)
    reads = onnx_inputs(model)
    unknown = [c for c in reads if c not in schema.columns]
    if unknown:
        raise OnnxExportError(model.steps[0][0], "ColumnTransformer", f"it reads {unknown}, "
                              "which the schema does not have")
    graph_model = _with_datetime_parts(model, reads)
    options = {id(graph_model.steps[-1][1]): {"zipmap": False}} if task != "regression" else None
    try:
        onx = convert_sklearn(graph_model, initial_types=_initial_types(reads),
                              options=options, target_opset=OPSET)
    except Exception as exc:  # skl2onnx raises bare RuntimeError/TypeError per converter
        raise OnnxExportError("model", type(model.steps[-1][1]).__name__,
                              f"skl2onnx failed: {exc}") from exc
    for key, value in ((METADATA_INPUTS, json.dumps(reads)), (METADATA_TASK, task)):
        entry = onx.metadata_props.add()
        entry.key, entry.value = key, value
    data: bytes = onx.SerializeToString()
    return data


def _check_steps(model: Any) -> None:
    """Every fitted step must have a converter; refuse naming the first that has none."""
    from skl2onnx import get_model_alias

    feature_name, features = model.steps[0]
    steps: list[tuple[str, Any]] = [(feature_name, features)]
    for name, branch, _ in getattr(features, "transformers_", []):
        if name == "remainder" or branch == "drop":
            continue
        for step_name, step in getattr(branch, "steps", [(name, branch)]):
            steps.append((f"{feature_name}/{name}/{step_name}", step))
    steps.append((model.steps[-1][0], model.steps[-1][1]))
    for where, step in steps:
        try:
            get_model_alias(type(step))
        except RuntimeError:
            raise OnnxExportError(where, type(step).__name__, "no ONNX converter is registered "
                                  "for it") from None


def _initial_types(reads: dict[str, str]) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    types: list[tuple[str, Any]] = []
    for column, read in reads.items():
        if read == "category":
            types.append((column, StringTensorType([None, 1])))
        elif read == "datetime":
            types += [(part_input(column, p), DoubleTensorType([None, 1]))
                      for p in DATETIME_PARTS]
        else:
            types.append((column, DoubleTensorType([None, 1])))
    return types


def _with_datetime_parts(model: Any, reads: dict[str, str]) -> Any:
    """A copy whose datetime branches read the four part inputs instead of the raw column
    (skl2onnx hands a branch one input column per name)."""
    if "datetime" not in reads.values():
        return model
    out = copy.deepcopy(model)
    features = out.steps[0][1]
    features.transformers_ = [
        (name, branch, [part_input(c, p) for c in columns for p in DATETIME_PARTS]
         if reads.get(str(columns[0]) if len(columns) else "") == "datetime"
         and name != "remainder" else columns)
        for name, branch, columns in features.transformers_]
    return out


@functools.cache
def _register_converters() -> None:
    """Register flywheel's converters with skl2onnx, once per process."""
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from sklearn.impute import MissingIndicator, SimpleImputer
    from sklearn.preprocessing import FunctionTransformer

    update_registered_converter(FunctionTransformer, "SklearnFunctionTransformer",
                                _same_shape, _identity)
    update_registered_converter(MissingIndicator, "FlywheelMissingIndicator",
                                _double_shape(lambda op: len(op.features_)), _missing_indicator)
    update_registered_converter(SimpleImputer, "SklearnImputer",
                                _double_shape(lambda op: len(op.statistics_)), _imputer)
    lightgbm_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    exact = _double_thresholds(convert_lightgbm)
    update_registered_converter(LGBMClassifier, "LightGbmLGBMClassifier",
                                _classifier_shape, exact, options=lightgbm_options)
    update_registered_converter(LGBMRegressor, "LightGbmLGBMRegressor", _regressor_shape, exact)


def _double_thresholds(convert: Callable[..., None]) -> Callable[..., None]:
    """onnxmltools' LightGBM converter with split thresholds kept in float64.

    It writes ``nodes_values`` as float32; onnxruntime then compares a double feature with the
    rounded threshold, and a value such as 265.3 against LightGBM's 265.30000000000007 goes
    the other way (a probability 0.016 off on churn). ``nodes_values_as_tensor`` (ai.onnx.ml
    3) holds them in float64, so every split decides as LightGBM's does.
    """

    def converter(scope: Any, operator: Any, container: Any) -> None:
        convert(scope, operator, _ExactThresholds(container))

    return converter


class _ExactThresholds:
    """A converter container that rewrites tree-ensemble thresholds as a float64 tensor."""

    _TREES = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, op_type: str, *args: Any, **attrs: Any) -> Any:
        if op_type in self._TREES and "nodes_values" in attrs:
            from onnx import numpy_helper

            values = np.asarray(attrs.pop("nodes_values"), dtype=np.float64)
            attrs["nodes_values_as_tensor"] = numpy_helper.from_array(values)
        return self._container.add_node(op_type, *args, **attrs)


def _same_shape(operator: Any) -> None:
    n = operator.inputs[0].get_first_dimension()
    width = 0
    for variable in operator.inputs:
        width += variable.type.shape[1]
    operator.outputs[0].type = copy.deepcopy(operator.inputs[0].type)
    operator.outputs[0].type.shape = [n, width]


def _double_shape(width: Callable[[Any], int]) -> Callable[[Any], None]:
    def shape(operator: Any) -> None:
        from skl2onnx.common.data_types import DoubleTensorType

        n = operator.inputs[0].get_first_dimension()
        operator.outputs[0].type = DoubleTensorType([n, width(operator.raw_operator)])

    return shape


def _classifier_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = Int64TensorType([n])
    operator.outputs[1].type = FloatTensorType([n, len(operator.raw_operator.classes_)])


def _regressor_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType

    operator.outputs[0].type = FloatTensorType([operator.inputs[0].get_first_dimension(), 1])


def _joined(scope: Any, operator: Any, container: Any) -> str:
    """The operator's inputs as one (rows, columns) tensor."""
    from skl2onnx.common._apply_operation import apply_concat

    names = [variable.full_name for variable in operator.inputs]
    if len(names) == 1:
        return str(names[0])
    joined = scope.get_unique_variable_name("joined")
    apply_concat(scope, names, joined, container, axis=1)
    return str(joined)


def _identity(scope: Any, operator: Any, container: Any) -> None:
    """The conversion functions: the graph's inputs already hold what they return."""
    from skl2onnx.common._apply_operation import apply_identity

    apply_identity(scope, _joined(scope, operator, container), operator.outputs[0].full_name,
                   container)


def _missing_indicator(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto
    from skl2onnx.common._apply_operation import apply_cast

    indicator = operator.raw_operator
    source = _joined(scope, operator, container)
    if len(indicator.features_) != len(operator.inputs):
        source = _take_columns(scope, container, source, list(indicator.features_))
    isnan = scope.get_unique_variable_name("isnan")
    container.add_node("IsNaN", [source], [isnan], name=scope.get_unique_operator_name("IsNaN"))
    apply_cast(scope, isnan, operator.outputs[0].full_name, container, to=TensorProto.DOUBLE)


def _imputer(scope: Any, operator: Any, container: Any) -> None:
    """``SimpleImputer`` on doubles: NaN becomes the learned statistic of its column."""
    from onnx import TensorProto

    statistics = np.asarray(operator.raw_operator.statistics_, dtype=np.float64)
    source = _joined(scope, operator, container)
    fill = scope.get_unique_variable_name("statistics")
    container.add_initializer(fill, TensorProto.DOUBLE, [1, len(statistics)], statistics.tolist())
    isnan = scope.get_unique_variable_name("isnan")
    container.add_node("IsNaN", [source], [isnan], name=scope.get_unique_operator_name("IsNaN"))
    container.add_node("Where", [isnan, fill, source], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Where"))


def _take_columns(scope: Any, container: Any, source: str, columns: list[int]) -> str:
    from onnx import TensorProto

    indices = scope.get_unique_variable_name("columns")
    container.add_initializer(indices, TensorProto.INT64, [len(columns)], columns)
    taken = scope.get_unique_variable_name("taken")
    container.add_node("Gather", [source, indices], [taken], axis=1,
                       name=scope.get_unique_operator_name("Gather"))
    return str(taken)
