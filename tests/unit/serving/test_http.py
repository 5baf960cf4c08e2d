from __future__ import annotations

import gzip
import zlib

import pytest

from flywheel.serving._http import HttpError, decoded_body


def test_gzip_and_deflate_bodies_are_decompressed_and_others_pass_as_they_are() -> None:
    body = b'{"inputs": []}'
    assert decoded_body(gzip.compress(body), b"gzip", 1000) == body
    assert decoded_body(zlib.compress(body), b"Deflate", 1000) == body
    assert decoded_body(body, b"", 1000) == body
    assert decoded_body(body, b"identity", 1000) == body


@pytest.mark.parametrize(("raw", "encoding", "status"), [
    (gzip.compress(b"0" * 10_000), b"gzip", 413),  # a small body that inflates past the limit
    (b"not gzip", b"gzip", 400),
    (b"{}", b"br", 415),
])
def test_a_body_that_cannot_be_decompressed_within_the_limit_gets_a_4xx(
        raw: bytes, encoding: bytes, status: int) -> None:
    with pytest.raises(HttpError) as caught:
        decoded_body(raw, encoding, 1000)
    assert caught.value.status == status
