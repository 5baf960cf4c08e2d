from __future__ import annotations

from openapi_spec_validator import validate

from flywheel.serving._openapi import openapi_document


def test_the_document_without_a_loaded_model_is_valid_openapi_3_1() -> None:
    doc = openapi_document(None)
    assert doc["openapi"] == "3.1.0"
    validate(doc)
