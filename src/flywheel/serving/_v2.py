"""The Open Inference Protocol v2 (KServe, Triton, MLServer) JSON tensor format.

Each model feature is one input tensor named after the column, shape ``[n]`` or ``[n, 1]``;
numeric features are FP64 (INT64 accepted), the others BYTES (text) or BOOL. Outputs:
``predictions`` (BYTES labels, or FP64 values for regression) and, for classifiers,
``probabilities`` (FP64, shape ``[n, classes]``, columns in the order of the metadata's
``classes`` parameter). ``outputs`` in the request picks which of them come back.

Tensors may travel as JSON ``data`` or as binary data after the JSON header (the
``binary_tensor_data`` extension, ``_v2_binary.py``), which tritonclient uses by default. Every
field of a request is type-checked before it is used: a malformed request gets a 400 listing
each problem; tensors that do not fit the model's features get a 422.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import orjson

from flywheel.serving._inputs import InputProblems
from flywheel.serving._v2_binary import BinaryProblem, decode_tensor, encode_tensor

if TYPE_CHECKING:
    from flywheel.serving._models import ServedModel

_NUMERIC = ("numeric", "integer")
_DATATYPES = {"numeric": "FP64", "integer": "FP64", "categorical": "BYTES", "boolean": "BOOL",
              "datetime": "BYTES"}
DATATYPES = ("FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32",
             "UINT16", "UINT8", "BYTES", "BOOL")
"""The tensor datatypes an input may have."""
_ACCEPTED = frozenset(DATATYPES)
_UNSUPPORTED = {"shared_memory_region": "shared memory is not supported; send data or binary data",
                "classification": "the classification extension is not supported; ask for the "
                                  "probabilities output"}


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


def output_names(served: ServedModel) -> list[str]:
    return ["predictions"] if served.model.task == "regression" else ["predictions",
                                                                      "probabilities"]


@dataclasses.dataclass(frozen=True)
class V2Request:
    """An inference request, checked: its records and how to answer it."""

    id: str | None
    records: list[dict[str, Any]]
    outputs: list[tuple[str, bool]]
    """The outputs to answer with, in order, and whether each goes as binary data."""
    warnings: list[dict[str, Any]]


def v2_request(body: Any, binary: bytes, served: ServedModel) -> V2Request:
    """The inference request in ``body`` (the JSON header) and ``binary`` (the binary data after
    it), checked against the model.

    Raises:
        V2Error: If the body is not a well-formed inference request.
        InputProblems: If the tensors do not match the model's features.
    """
    if not isinstance(body, dict):
        raise V2Error('expected an inference request: {"inputs": [{"name", "datatype", '
                      '"shape", "data"}, ...]}')
    problems: list[dict[str, Any]] = []
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        problems.append({"loc": ["id"], "msg": "expected text"})
    parameters = _object(body, "parameters", ["parameters"], problems)
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        problems.append({"loc": ["parameters", "binary_data_output"], "msg": "expected true or "
                         "false"})
        binary_output = False
    outputs = _outputs(body.get("outputs"), served, binary_output, problems)
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        problems.append({"loc": ["inputs"], "msg": "expected a non-empty list of input tensors, "
                         "one per feature"})
        inputs = []
    columns: dict[str, list[Any]] = {}
    offset = 0
    for i, tensor in enumerate(inputs):
        offset = _input(tensor, ["inputs", i], binary, offset, served, columns, problems)
    if offset < len(binary) and not problems:
        problems.append({"loc": ["inputs"], "msg": f"{len(binary) - offset} bytes of binary "
                         "data after the JSON header belong to no input (parameters."
                         "binary_data_size)"})
    if problems:
        raise V2Error("invalid inference request", problems)
    features = served.checker.columns
    missing = [{"loc": ["inputs", name], "msg": "missing input tensor"}
               for name in features if name not in columns]
    unknown = [{"loc": ["inputs", name], "msg": "unknown input; expected only the model's "
                f"features ({len(features)} tensors)"} for name in columns
               if name not in served.checker.expected]
    if missing or unknown:
        raise InputProblems(missing + unknown)
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise V2Error(f"input tensors have different lengths {sorted(lengths)}; each feature "
                      "needs one value per record")
    names = list(columns)
    records = [dict(zip(names, values, strict=True))
               for values in zip(*columns.values(), strict=True)]
    warnings = served.checker.check(records, where="inputs")
    return V2Request(request_id, records, outputs, warnings)


def _object(owner: dict[str, Any], key: str, loc: list[Any],
            problems: list[dict[str, Any]]) -> dict[str, Any]:
    value = owner.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append({"loc": loc, "msg": "expected an object"})
        return {}
    return value


def _outputs(given: Any, served: ServedModel, binary_output: bool,
             problems: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    names = output_names(served)
    if given is None or given == []:
        return [(name, binary_output) for name in names]
    if not isinstance(given, list):
        problems.append({"loc": ["outputs"], "msg": "expected a list of requested outputs"})
        return []
    chosen: list[tuple[str, bool]] = []
    for j, output in enumerate(given):
        where: list[Any] = ["outputs", j]
        if not isinstance(output, dict):
            problems.append({"loc": where, "msg": 'expected {"name": ...}'})
            continue
        name = output.get("name")
        if not isinstance(name, str) or name not in names:
            problems.append({"loc": [*where, "name"], "msg": f"expected one of {names}"})
            continue
        if any(name == seen for seen, _ in chosen):
            problems.append({"loc": [*where, "name"], "msg": f"output {name!r} asked for twice"})
            continue
        parameters = _object(output, "parameters", [*where, "parameters"], problems)
        binary = parameters.get("binary_data", binary_output)
        if not isinstance(binary, bool):
            problems.append({"loc": [*where, "parameters", "binary_data"],
                             "msg": "expected true or false"})
            continue
        if parameters.get("classification"):
            problems.append({"loc": [*where, "parameters", "classification"],
                             "msg": _UNSUPPORTED["classification"]})
            continue
        chosen.append((name, binary))
    return chosen


def _input(tensor: Any, where: list[Any], binary: bytes, offset: int, served: ServedModel,
           columns: dict[str, list[Any]], problems: list[dict[str, Any]]) -> int:
    """Read one input tensor into ``columns``; the offset of the next binary input."""
    if not isinstance(tensor, dict):
        problems.append({"loc": where, "msg": "expected an input tensor: an object with name, "
                         "datatype, shape and data"})
        return offset
    mine: list[dict[str, Any]] = []
    parameters = _object(tensor, "parameters", [*where, "parameters"], mine)
    size = parameters.get("binary_data_size")
    chunk = b""
    if size is not None:
        if type(size) is not int or size < 0:
            mine.append({"loc": [*where, "parameters", "binary_data_size"],
                         "msg": "expected a whole number of bytes"})
        else:
            chunk = binary[offset:offset + size]
            if len(chunk) < size:
                mine.append({"loc": [*where, "parameters", "binary_data_size"],
                             "msg": f"{size} bytes asked for, {len(binary) - offset} left in the "
                             "binary data (is the Inference-Header-Content-Length header set?)"})
            offset += size
    for key, message in _UNSUPPORTED.items():
        if key in parameters:
            mine.append({"loc": [*where, "parameters", key], "msg": message})
    name: Any = tensor.get("name")
    datatype: Any = tensor.get("datatype")
    if not isinstance(name, str) or not name:
        mine.append({"loc": [*where, "name"], "msg": "expected the feature's name as text"})
    elif name in columns:
        mine.append({"loc": [*where, "name"], "msg": f"input {name!r} given twice"})
    if not isinstance(datatype, str) or datatype not in _ACCEPTED:
        mine.append({"loc": [*where, "datatype"], "msg": f"expected one of {', '.join(DATATYPES)}"})
    shape = tensor.get("shape")
    if shape is not None:
        shape = _shape(shape)
        if shape is None:
            mine.append({"loc": [*where, "shape"], "msg": "expected [n] or [n, 1]: one value "
                         "per record"})
    if size is not None and "data" in tensor:
        mine.append({"loc": [*where, "data"], "msg": "give data or parameters.binary_data_size, "
                     "not both"})
    if mine:
        problems.extend(mine)
        return offset
    data = _values(tensor, datatype, chunk if size is not None else None, [*where, "data"],
                   problems)
    if data is None:
        return offset
    if shape is not None and math.prod(shape) != len(data):
        problems.append({"loc": [*where, "shape"], "msg": f"shape {shape} does not match the "
                         f"{len(data)} values given"})
        return offset
    column = served.checker.kinds.get(name)
    if datatype.startswith(("INT", "UINT")) and column in _NUMERIC:
        data = [float(v) if type(v) is int else v for v in data]
    columns[name] = data
    return offset


def _shape(shape: Any) -> list[int] | None:
    """``[n]`` or ``[n, 1]`` as whole numbers (JSON Schema's integers include ``2.0``)."""
    if not isinstance(shape, list) or not 1 <= len(shape) <= 2:
        return None
    dims = []
    for d in shape:
        if type(d) is float and d.is_integer():
            d = int(d)
        if type(d) is not int or d < 0:
            return None
        dims.append(d)
    return dims if len(dims) == 1 or dims[1] == 1 else None


def _values(tensor: dict[str, Any], datatype: str, chunk: bytes | None, where: list[Any],
            problems: list[dict[str, Any]]) -> list[Any] | None:
    """The tensor's values, flattened; None after recording a problem."""
    if chunk is not None:
        try:
            return decode_tensor(datatype, chunk)
        except BinaryProblem as exc:
            problems.append({"loc": where, "msg": str(exc)})
            return None
    data = tensor.get("data")
    if not isinstance(data, list):
        problems.append({"loc": where, "msg": "expected a list of values (or parameters."
                         "binary_data_size with binary data)"})
        return None
    if data and isinstance(data[0], list):  # shape [n, 1] sent nested
        if any(not isinstance(row, list) or len(row) != 1 for row in data):
            problems.append({"loc": where, "msg": "each feature tensor must have shape [n] or "
                             "[n, 1]"})
            return None
        data = [row[0] for row in data]
    return data


def output_tensors(served: ServedModel, predictions: list[Any],
                   probabilities: list[list[float]] | None
                   ) -> dict[str, tuple[str, list[int], list[Any]]]:
    """The model's outputs for an answer, by name: (datatype, shape, values flattened), the
    same over HTTP and gRPC."""
    n = len(predictions)
    if probabilities is None:
        return {"predictions": ("FP64", [n], predictions)}
    return {"predictions": ("BYTES", [n], predictions),
            "probabilities": ("FP64", [n, len(served.model.classes)],
                              [p for row in probabilities for p in row])}


def v2_response(served: ServedModel, request: V2Request, request_id: str,
                predictions: list[Any], probabilities: list[list[float]] | None
                ) -> tuple[bytes, int | None]:
    """The response body, and the length of its JSON header when binary outputs follow it
    (None: the body is all JSON)."""
    model = served.model
    tensors = output_tensors(served, predictions, probabilities)
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, binary in request.outputs:
        datatype, shape, values = tensors[name]
        output: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if binary:
            blob = encode_tensor(datatype, values)
            output["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            output["data"] = values
        outputs.append(output)
    payload: dict[str, Any] = {"model_name": model.name, "model_version": model.version,
                               "id": request_id, "outputs": outputs}
    if request.warnings:
        # OIP parameters hold scalars: the warnings as one text.
        payload["parameters"] = {"warnings": "; ".join(
            f"{'.'.join(map(str, w['loc']))}: {w['msg']}" for w in request.warnings)}
    header = orjson.dumps(payload)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
