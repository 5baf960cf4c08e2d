"""Open Inference Protocol messages over gRPC to and from the form the HTTP path checks.

A ``ModelInferRequest`` becomes the JSON body and binary data of the HTTP protocol
(``_v2.py``), so one function (``v2_request``) checks both: typed ``contents`` become a tensor's
``data``, ``raw_input_contents`` become binary data with each input's
``parameters.binary_data_size``. Outputs go back as ``raw_output_contents`` unless the request
sets ``binary_data_output`` false, as Triton answers (tritonclient's ``InferResult.as_numpy``
reads raw contents); typed ``contents`` otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flywheel.serving._v2 import output_tensors
from flywheel.serving._v2_binary import encode_tensor
from flywheel.serving.proto import grpc_predict_v2_pb2 as pb

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flywheel.serving._models import ServedModel
    from flywheel.serving._v2 import V2Request

_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
             "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
             "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
             "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
"""The ``InferTensorContents`` field that holds each datatype (FP16 has none: raw only)."""
_FIELDS = tuple(dict.fromkeys(_CONTENTS.values()))


def parameter_values(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """A protobuf parameter map as plain values (an unset parameter as None)."""
    values: dict[str, Any] = {}
    for key, parameter in parameters.items():
        which = parameter.WhichOneof("parameter_choice")
        values[key] = None if which is None else getattr(parameter, which)
    return values


def request_body(request: pb.ModelInferRequest
                 ) -> tuple[dict[str, Any], bytes, list[dict[str, Any]]]:
    """``request`` as the HTTP protocol's JSON body and binary data, and the problems only
    gRPC can have (contents in the wrong field, raw contents that do not pair with the
    inputs, non-UTF-8 BYTES). A tensor with such a problem carries ``null`` values, so the
    shared checks still report everything else."""
    problems: list[dict[str, Any]] = []
    parameters = parameter_values(request.parameters)
    parameters.setdefault("binary_data_output", True)
    body: dict[str, Any] = {"parameters": parameters,
                            "outputs": [{"name": o.name,
                                         "parameters": parameter_values(o.parameters)}
                                        for o in request.outputs]}
    if request.id:
        body["id"] = request.id
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        problems.append({"loc": ["raw_input_contents"], "msg": f"{len(raw)} entries for "
                         f"{len(request.inputs)} inputs; give one per input, in order, or "
                         "typed contents for all"})
        raw = []
    inputs: list[dict[str, Any]] = []
    for i, tensor in enumerate(request.inputs):
        where: list[Any] = ["inputs", i]
        shape = list(tensor.shape)
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype,
                                 "parameters": parameter_values(tensor.parameters)}
        if shape:
            entry["shape"] = shape
        typed = [f for f in _FIELDS if len(getattr(tensor.contents, f))]
        if raw:
            if typed:
                problems.append({"loc": [*where, "contents"], "msg": "typed contents and "
                                 "raw_input_contents both given; use one for all inputs"})
                entry["data"] = _nulls(shape)
            else:
                entry["parameters"]["binary_data_size"] = len(raw[i])
        else:
            entry["data"] = _typed_values(tensor, typed, where, shape, problems)
        if "data" in entry:  # a size means nothing over gRPC: the data is in the message
            entry["parameters"].pop("binary_data_size", None)
        inputs.append(entry)
    body["inputs"] = inputs
    return body, b"".join(raw), problems


def _typed_values(tensor: pb.ModelInferRequest.InferInputTensor, typed: list[str],
                  where: list[Any], shape: list[int], problems: list[dict[str, Any]]
                  ) -> list[Any]:
    expected = _CONTENTS.get(tensor.datatype)
    if not typed:
        nulls = _nulls(shape)
        if nulls and expected is None and tensor.datatype:
            problems.append({"loc": [*where, "contents"], "msg": f"{tensor.datatype} has no "
                             "typed contents field; send it in raw_input_contents"})
        elif nulls:
            problems.append({"loc": [*where, "contents"], "msg": "no values: give them in "
                             f"contents.{expected or '<datatype>_contents'} or in "
                             "raw_input_contents"})
        return nulls
    if expected is not None and typed != [expected]:
        problems.append({"loc": [*where, "contents"], "msg": f"a {tensor.datatype} tensor's "
                         f"values go in contents.{expected}, got {', '.join(typed)}"})
        return _nulls(shape)
    values: list[Any] = list(getattr(tensor.contents, typed[0]))
    if typed[0] == "bytes_contents":
        texts: list[Any] = []
        for j, value in enumerate(values):
            try:
                texts.append(value.decode("utf-8"))
            except UnicodeDecodeError:
                problems.append({"loc": [*where, "contents", "bytes_contents", j],
                                 "msg": "not UTF-8 text"})
                texts.append(None)
        return texts
    if typed[0] in ("fp32_contents", "fp64_contents"):
        # NaN is a missing value, as in binary data (decode_tensor).
        return [None if v != v else v for v in values]
    return values


def _nulls(shape: list[int]) -> list[Any]:
    size = 1
    for d in shape:
        size *= max(d, 0)
    return [None] * (size if shape else 0)


def infer_response(served: ServedModel, request: V2Request, request_id: str,
                   predictions: list[Any], probabilities: list[list[float]] | None
                   ) -> pb.ModelInferResponse:
    """The answer to ``request``: its outputs, raw unless every one asked for typed
    contents (``raw_output_contents`` pair with all outputs or none)."""
    tensors = output_tensors(served, predictions, probabilities)
    raw = any(binary for _, binary in request.outputs)
    response = pb.ModelInferResponse(model_name=served.model.name,
                                     model_version=served.model.version, id=request_id)
    for name, _ in request.outputs:
        datatype, shape, values = tensors[name]
        output = response.outputs.add(name=name, datatype=datatype, shape=shape)
        if raw:
            response.raw_output_contents.append(encode_tensor(datatype, values))
        elif datatype == "BYTES":
            output.contents.bytes_contents.extend(str(v).encode("utf-8") for v in values)
        else:
            output.contents.fp64_contents.extend(values)
    if request.warnings:
        response.parameters["warnings"].string_param = "; ".join(
            f"{'.'.join(map(str, w['loc']))}: {w['msg']}" for w in request.warnings)
    return response


def metadata_response(metadata: dict[str, Any]) -> pb.ModelMetadataResponse:
    """The HTTP protocol's model metadata (``v2_metadata``) as its gRPC message."""
    response = pb.ModelMetadataResponse(name=metadata["name"], versions=metadata["versions"],
                                        platform=metadata["platform"])
    for field in ("inputs", "outputs"):
        for tensor in metadata[field]:
            getattr(response, field).add(name=tensor["name"], datatype=tensor["datatype"],
                                         shape=tensor["shape"])
    return response
