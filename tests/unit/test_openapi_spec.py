"""The gateway's OpenAPI description as a client generator reads it: each operation's errors in the envelope
its route answers with, the console's calls behind its session (and CSRF token for changes), and every path
parameter declared. That every route is described is checked against a running gateway
(tests/e2e/test_openapi_fuzz.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from claudegate.server.openapi import openapi_spec
from claudegate.server.openapi_ops import ANTHROPIC_ERROR, OPENAI_ERROR

SPEC = openapi_spec("test")
OPERATIONS = [
    (path, method, operation) for path, item in SPEC["paths"].items() for method, operation in item.items()
]


def _error_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    errors = operation["responses"].get("4XX")
    return None if errors is None else errors["content"]["application/json"]["schema"]


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS, ids=lambda v: str(v)[:60])
def test_errors_come_in_the_envelope_of_the_route(path: str, method: str, operation: dict[str, Any]) -> None:
    schema = _error_schema(operation)
    if schema is None:  # health, metrics, the console's page: no input, nothing to refuse
        assert "security" not in operation
        assert "requestBody" not in operation
        return
    if path == "/v1/chat/completions":
        assert schema == OPENAI_ERROR
    elif path.startswith("/v1/models"):  # Anthropic's or OpenAI's, as the reply's shape
        assert schema == {"oneOf": [ANTHROPIC_ERROR, OPENAI_ERROR]}
    else:
        assert schema == ANTHROPIC_ERROR


def test_the_openai_shape_of_models_is_described_beside_anthropics() -> None:
    for path in ("/v1/models", "/v1/models/{model_id}"):
        shapes = SPEC["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert len(shapes["oneOf"]) == 2
        assert {"gatewayBearer", "gatewayKey"} == {
            scheme for requirement in SPEC["paths"][path]["get"]["security"] for scheme in requirement
        }


def test_console_calls_need_the_session_and_changes_its_csrf_token() -> None:
    for path, method, operation in OPERATIONS:
        if not path.startswith("/console/api") and path != "/console/sign-out":
            continue
        required = set(operation["security"][0])
        assert len(operation["security"]) == 1  # one requirement: every scheme in it at once
        if method in ("get", "head"):
            assert required == {"consoleSession"}, path
        else:
            assert required == {"consoleSession", "consoleCsrf"}, (method, path)


def test_the_console_serves_the_admin_and_chat_apis_under_its_own_prefix() -> None:
    paths = SPEC["paths"]
    for path, item in paths.items():
        if path.startswith(("/admin/", "/chat")):
            assert set(paths["/console/api" + path]) == set(item), path


def test_uploads_are_multipart_with_a_file_part() -> None:
    body = SPEC["paths"]["/v1/files"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data"}
    assert body["multipart/form-data"]["schema"]["required"] == ["file"]


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS, ids=lambda v: str(v)[:60])
def test_every_path_parameter_is_declared(path: str, method: str, operation: dict[str, Any]) -> None:
    declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
    assert declared == set(re.findall(r"\{(\w+)\}", path))


def test_every_security_scheme_used_is_defined() -> None:
    defined = set(SPEC["components"]["securitySchemes"])
    used = {
        scheme
        for _, _, operation in OPERATIONS
        for requirement in operation.get("security", [])
        for scheme in requirement
    }
    assert used <= defined
