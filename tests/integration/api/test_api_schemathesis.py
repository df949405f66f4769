"""Property-based tests of the live API from its own OpenAPI schema (schemathesis).

Each operation gets a bounded number of generated requests, valid ones and invalid ones; every
response must not be a 5xx and must match the status codes, content types, headers and schemas
the OpenAPI document declares. Event streams never end on their own, so they are tested in
``test_api_events.py`` instead. The server runs on loopback only.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from api_helpers import serve
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from support import make_settings
from taskflow_server.api.app import create_app

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 20


def _cases() -> list[tuple[str, str, GenerationMode]]:
    """(method, path, mode) for every operation but the streams; negative only with inputs."""
    spec = create_app(make_settings(redis_url="redis://unused")).openapi()
    out = []
    for path, ops in spec["paths"].items():
        if path.endswith("/stream") or path == "/api/v1/events":
            continue
        for method, op in ops.items():
            out.append((method, path, GenerationMode.POSITIVE))
            if op.get("parameters") or op.get("requestBody"):
                out.append((method, path, GenerationMode.NEGATIVE))
    return out


@pytest.fixture(scope="module")
def api_schema(redis_url: str) -> Iterator[schemathesis.BaseSchema]:
    """A live server (module-wide) and its schema as schemathesis loads it."""
    with serve(redis_url) as api:
        yield schemathesis.openapi.from_url(f"{api.url}/openapi.json")


@pytest.mark.parametrize(("method", "path", "mode"), _cases())
def test_operation_conforms(
    api_schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method.upper()]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS, timeout=10)

    run()
