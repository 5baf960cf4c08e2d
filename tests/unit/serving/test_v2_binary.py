from __future__ import annotations

import math

import numpy as np
import pytest
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from flywheel.serving._v2_binary import BinaryProblem, decode_tensor, encode_tensor, split_body


def test_bytes_tensors_read_as_tritonclient_writes_them() -> None:
    values = np.array(["no", "", "yés", "a" * 300], dtype=object)
    data = serialize_byte_tensor(values).item()
    assert decode_tensor("BYTES", data) == list(values)


@pytest.mark.parametrize(("datatype", "dtype"), [
    ("FP64", np.float64), ("FP32", np.float32), ("FP16", np.float16), ("INT64", np.int64),
    ("INT8", np.int8), ("UINT32", np.uint32), ("BOOL", np.bool_)])
def test_numeric_tensors_read_back_their_values(datatype: str, dtype: type) -> None:
    values = np.array([0, 1, 1, 0, 1], dtype=dtype)
    assert decode_tensor(datatype, values.tobytes()) == values.tolist()


def test_nan_in_a_floating_point_tensor_is_a_missing_value() -> None:
    data = np.array([1.5, math.nan], dtype=np.float32).tobytes()
    assert decode_tensor("FP32", data) == [1.5, None]


@pytest.mark.parametrize(("datatype", "data", "needle"), [
    ("FP64", b"\0" * 12, "not a whole number of FP64"),
    ("BYTES", b"\x05\0\0\0ab", "runs past"),
    ("BYTES", b"\x01\0", "inside an element's 4-byte length"),
    ("BYTES", b"\x02\0\0\0\xff\xfe", "not UTF-8"),
    ("BOOL", b"\x02", "0 or 1"),
])
def test_bytes_that_are_not_whole_values_are_a_problem(datatype: str, data: bytes,
                                                       needle: str) -> None:
    with pytest.raises(BinaryProblem, match=needle):
        decode_tensor(datatype, data)


def test_outputs_encode_as_tritonclient_reads_them() -> None:
    assert deserialize_bytes_tensor(encode_tensor("BYTES", ["no", "yes"])).tolist() == \
        [b"no", b"yes"]
    probabilities = [0.25, 0.75, 1.0, 0.0]
    assert np.frombuffer(encode_tensor("FP64", probabilities), "<f8").tolist() == probabilities


def test_the_header_length_splits_json_from_binary_data() -> None:
    assert split_body(b'{"a":1}xyz', b"7") == (b'{"a":1}', b"xyz")
    assert split_body(b'{"a":1}', b"") == (b'{"a":1}', b"")
    for bad in (b"8", b"-1", b"x"):
        with pytest.raises(BinaryProblem, match="Inference-Header-Content-Length"):
            split_body(b'{"a":1}', bad)
