"""The Open Inference Protocol's binary tensor data extension (``binary_tensor_data``).

A request with binary tensors is a JSON header followed by raw bytes: the header's length is in
the ``Inference-Header-Content-Length`` HTTP header, and each input whose data is binary says
how many bytes it takes (``parameters.binary_data_size``, no ``data``), in the order of the
inputs. Numbers and BOOL are little-endian, C order; each BYTES element is a 4-byte
little-endian length followed by that many bytes. Responses use the same layout for the outputs
asked for as binary (``outputs[].parameters.binary_data``, or ``parameters.binary_data_output``
for all), which is what tritonclient does by default.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

__all__ = ["BINARY_EXTENSION", "HEADER_LENGTH", "decode_tensor", "encode_tensor", "split_body"]

BINARY_EXTENSION = "binary_tensor_data"
"""The extension's name in the server metadata."""

HEADER_LENGTH = b"inference-header-content-length"

_NUMPY = {"FP64": "<f8", "FP32": "<f4", "FP16": "<f2", "INT64": "<i8", "INT32": "<i4",
          "INT16": "<i2", "INT8": "i1", "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2",
          "UINT8": "u1", "BOOL": "?"}
_LENGTH = struct.Struct("<I")


class BinaryProblem(ValueError):
    """Binary data that cannot be read as the tensor it claims to be."""


def split_body(raw: bytes, declared: bytes) -> tuple[bytes, bytes]:
    """The JSON header and the binary data of a request body.

    Args:
        raw: The whole body.
        declared: The ``Inference-Header-Content-Length`` header's value (empty: no binary
            data, the whole body is JSON).

    Raises:
        BinaryProblem: If the header is not a length within the body.
    """
    if not declared:
        return raw, b""
    text = declared.strip()
    if not text.isdigit() or int(text) > len(raw):
        raise BinaryProblem(f"Inference-Header-Content-Length must be the length in bytes of the "
                            f"JSON header, at most the body's {len(raw)} bytes; got "
                            f"{text[:20].decode('latin-1')!r}")
    size = int(text)
    return raw[:size], raw[size:]


def decode_tensor(datatype: str, data: bytes) -> list[Any]:
    """The values of one binary input tensor, flattened, as plain Python values.

    A NaN in a floating-point tensor is a missing value (None), as ``null`` is in JSON.

    Raises:
        BinaryProblem: If the bytes do not hold whole elements of ``datatype``.
    """
    if datatype == "BYTES":
        return _decode_bytes(data)
    dtype = np.dtype(_NUMPY[datatype])
    if len(data) % dtype.itemsize:
        raise BinaryProblem(f"{len(data)} bytes are not a whole number of {datatype} values "
                            f"({dtype.itemsize} bytes each)")
    if datatype == "BOOL" and any(b > 1 for b in data):
        raise BinaryProblem("BOOL values must be bytes 0 or 1")
    values: list[Any] = np.frombuffer(data, dtype=dtype).tolist()
    if dtype.kind == "f":
        values = [None if v != v else v for v in values]
    return values


def _decode_bytes(data: bytes) -> list[Any]:
    values: list[Any] = []
    offset, end = 0, len(data)
    while offset < end:
        if offset + 4 > end:
            raise BinaryProblem(f"BYTES data ends inside an element's 4-byte length at byte "
                                f"{offset}")
        (size,) = _LENGTH.unpack_from(data, offset)
        offset += 4
        if offset + size > end:
            raise BinaryProblem(f"a BYTES element of {size} bytes at byte {offset} runs past "
                                f"the {end} bytes given")
        try:
            values.append(data[offset:offset + size].decode("utf-8"))
        except UnicodeDecodeError:
            raise BinaryProblem(f"the BYTES element at byte {offset} is not UTF-8 text") from None
        offset += size
    return values


def encode_tensor(datatype: str, values: list[Any]) -> bytes:
    """``values`` (flattened) as the binary data of an output tensor."""
    if datatype == "BYTES":
        parts = []
        for value in values:
            encoded = str(value).encode("utf-8")
            parts.append(_LENGTH.pack(len(encoded)))
            parts.append(encoded)
        return b"".join(parts)
    return np.asarray(values, dtype=_NUMPY[datatype]).tobytes()
