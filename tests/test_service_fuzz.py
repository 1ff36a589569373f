"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis, in-process against the app): no 5xx, every
4xx is JSON naming the field at fault, every response matches the schema. Valid and invalid data both.

A short run (a few dozen cases per operation); benchmarks/fuzz.py runs >= 10,000 cases.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from spanqa import Reader
from spanqa.service.app import ServiceSettings, create_app

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
CASES_PER_OPERATION = 40
# Multipart uploads: schemathesis makes "invalid" files by putting a number where a file goes, but a file of
# digits is a file (a text file): those operations keep every other check.
FILE_ENDPOINTS = {"/v1/answer/file", "/v1/documents/extract"}


def errors_name_the_field(ctx, response, case) -> bool | None:
    """Every 4xx is a JSON error with a one-line message; a 422 names the field (or says it is the body)."""
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    assert isinstance(body, dict) and body["error"] and body["message"], body
    assert "\n" not in body["message"]
    if response.status_code == 422:
        named = isinstance(body.get("field"), str) and body["field"]
        assert named or "body" in body["message"], body
    return True


@pytest.fixture
def app(tiny_bert_dir, tmp_path):
    """The default limits, a timeout no slow CI machine reaches, and a small index for /v1/ask.

    One app per run: its lifespan's end shuts the model thread down for good, as a server's does."""
    from spanqa.retrieval.index import DocumentIndex

    with DocumentIndex(tmp_path / "docs.db") as index:
        index.add_texts([("lighthouse", "The lighthouse was first lit in 1849."), ("lamp", "It burned oil.")])
        yield create_app(Reader.load(tiny_bert_dir), ServiceSettings(timeout_s=120.0), index=index)


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_the_api_holds_under_fuzzing(app, mode):
    from fastapi.testclient import TestClient

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/answer", "/v1/answer/batch", "/v1/ask"}
    calls: dict[int, int] = {}

    @given(st.sampled_from(operations).flatmap(lambda op: op.as_strategy(generation_mode=mode)))
    @settings(
        max_examples=CASES_PER_OPERATION * len(operations),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(case) -> None:
        checks = [*CHECKS, errors_name_the_field]
        if case.operation.path in FILE_ENDPOINTS:  # any bytes are a file: "violating" file data is valid too
            checks.remove(negative_data_rejection)
        response = case.call_and_validate(checks=checks)
        calls[response.status_code] = calls.get(response.status_code, 0) + 1

    with TestClient(app, raise_server_exceptions=False):  # the lifespan starts the model thread
        fuzz()
    assert sum(calls.values()) >= CASES_PER_OPERATION, calls
