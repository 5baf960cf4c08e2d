"""The Open Inference Protocol v2 (KServe, Triton, MLServer) JSON tensor format.

Each model feature is one input tensor named after the column, shape ``[n]`` or ``[n, 1]``;
numeric features are FP64 (INT64 accepted), the others BYTES (text) or BOOL. Outputs:
``predictions`` (BYTES labels, or FP64 values for regression) and, for classifiers,
``probabilities`` (FP64, shape ``[n, classes]``, columns in the order of the metadata's
``classes`` parameter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flywheel.serving._models import ServedModel

_NUMERIC = ("numeric", "integer")
_DATATYPES = {"numeric": "FP64", "integer": "FP64", "categorical": "BYTES", "boolean": "BOOL",
              "datetime": "BYTES"}
_ACCEPTED = {"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32",
             "UINT16", "UINT8", "BYTES", "BOOL"}


class V2Error(ValueError):
    """A request that is not a valid inference request."""

    def __init__(self, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


def v2_metadata(served: ServedModel) -> dict[str, Any]:
    model = served.model
    schema = model.schema
    inputs = [{"name": name, "datatype": _DATATYPES[schema.columns[name].kind], "shape": [-1]}
              for name in model.features]
    if model.task == "regression":
        outputs = [{"name": "predictions", "datatype": "FP64", "shape": [-1]}]
    else:
        outputs = [{"name": "predictions", "datatype": "BYTES", "shape": [-1]},
                   {"name": "probabilities", "datatype": "FP64",
                    "shape": [-1, len(model.classes)]}]
    return {"name": model.name, "versions": [model.version], "platform": "flywheel-sklearn",
            "inputs": inputs, "outputs": outputs,
            "parameters": {"task": model.task, "classes": list(model.classes)}}


def v2_records(body: Any, served: ServedModel) -> tuple[str | None, list[dict[str, Any]]]:
    """The request id and the records of an infer request, checked against the model.

    Raises:
        V2Error: If the body is not an inference request.
        InputProblems: If the tensors do not match the model's features.
    """
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise V2Error('expected {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Error("id must be a string")
    columns: dict[str, list[Any]] = {}
    problems: list[dict[str, Any]] = []
    for i, tensor in enumerate(body["inputs"]):
        where = ["inputs", i]
        if not isinstance(tensor, dict) or not {"name", "datatype", "data"} <= tensor.keys():
            problems.append({"loc": where, "msg": "each input needs name, datatype and data"})
            continue
        name, datatype, data = tensor["name"], tensor["datatype"], tensor["data"]
        if datatype not in _ACCEPTED:
            problems.append({"loc": [*where, "datatype"], "msg": f"unknown datatype {datatype!r}"})
            continue
        if not isinstance(data, list):
            problems.append({"loc": [*where, "data"], "msg": "data must be a list"})
            continue
        if data and isinstance(data[0], list):  # shape [n, 1] sent nested
            if any(not isinstance(row, list) or len(row) != 1 for row in data):
                problems.append({"loc": [*where, "data"], "msg": "each feature tensor must "
                                 "have shape [n] or [n, 1]"})
                continue
            data = [row[0] for row in data]
        shape = tensor.get("shape")
        if isinstance(shape, list) and shape and isinstance(shape[0], int) \
                and shape[0] != len(data):
            problems.append({"loc": [*where, "shape"], "msg": f"shape {shape} does not match "
                             f"{len(data)} values"})
            continue
        if name in columns:
            problems.append({"loc": [*where, "name"], "msg": f"input {name!r} given twice"})
            continue
        if datatype.startswith(("INT", "UINT")) and all(isinstance(v, int) for v in data):
            data = [float(v) for v in data] if served.model.schema.columns.get(name) is not None \
                and served.model.schema.columns[name].kind in _NUMERIC else data
        columns[str(name)] = data
    if problems:
        raise V2Error("invalid inference request", problems)
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise V2Error(f"input tensors have different lengths {sorted(lengths)}")
    names = list(columns)
    records = [dict(zip(names, values)) for values in zip(*columns.values())]
    if not columns:
        records = []
    served.checker.check(records, where="inputs")
    return request_id, records


def v2_response(served: ServedModel, request_id: str, predictions: list[Any],
                probabilities: list[list[float]] | None) -> dict[str, Any]:
    model = served.model
    n = len(predictions)
    if probabilities is None:
        outputs = [{"name": "predictions", "datatype": "FP64", "shape": [n], "data": predictions}]
    else:
        k = len(model.classes)
        outputs = [
            {"name": "predictions", "datatype": "BYTES", "shape": [n], "data": predictions},
            {"name": "probabilities", "datatype": "FP64", "shape": [n, k],
             "data": [p for row in probabilities for p in row]},
        ]
    return {"model_name": model.name, "model_version": model.version, "id": request_id,
            "outputs": outputs}
