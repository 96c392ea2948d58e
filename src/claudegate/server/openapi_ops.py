"""The building blocks of the gateway's OpenAPI description (``openapi.py``): operations, parameters,
bodies and the two error envelopes the gateway answers in (Anthropic's, and OpenAI's on the OpenAI routes).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "ANTHROPIC_ERROR",
    "JSON",
    "OPENAI_ERROR",
    "PAGE",
    "SSE",
    "json_body",
    "op",
    "path_param",
    "query_param",
]

JSON: Final = "application/json"
SSE: Final = "text/event-stream"

ANTHROPIC_ERROR: Final[dict[str, Any]] = {
    "type": "object",
    "description": "Anthropic's error envelope.",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
        "request_id": {"type": ["string", "null"]},
    },
}
OPENAI_ERROR: Final[dict[str, Any]] = {
    "type": "object",
    "description": "OpenAI's error envelope.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "examples": ["invalid_request_error"]},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

PAGE: Final[list[dict[str, Any]]] = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
    {"name": "before_id", "in": "query", "schema": {"type": "string"}},
    {"name": "after_id", "in": "query", "schema": {"type": "string"}},
]


def json_body(schema: dict[str, Any], content_type: str = JSON) -> dict[str, Any]:
    return {"required": True, "content": {content_type: {"schema": schema}}}


def op(
    summary: str,
    *,
    tag: str,
    security: str | list[str] | None,
    body: dict[str, Any] | None = None,
    body_type: str = JSON,
    params: list[dict[str, Any]] | None = None,
    ok: str = "200",
    streams: bool = False,
    reply: dict[str, Any] | None = None,
    error: dict[str, Any] = ANTHROPIC_ERROR,
    description: str | None = None,
) -> dict[str, Any]:
    """One operation. ``security``: a scheme, or alternatives (any one of them will do). ``reply``: the
    success reply's content by media type (default: a JSON object, and SSE when it ``streams``). ``error``:
    the envelope of its 4xx and 5xx answers."""
    content: dict[str, Any] = reply if reply is not None else {JSON: {"schema": {"type": "object"}}}
    if streams:
        content = {**content, SSE: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {ok: {"description": "Success", "content": content}}
    if security is not None or body is not None or params:
        responses["4XX"] = {"description": "An error", "content": {JSON: {"schema": error}}}
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if description is not None:
        operation["description"] = description
    if security is not None:
        schemes = [security] if isinstance(security, str) else security
        operation["security"] = [{scheme: []} for scheme in schemes]
    if body is not None:
        operation["requestBody"] = json_body(body, body_type)
    if params:
        operation["parameters"] = params
    return operation


def path_param(name: str, description: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if pattern is not None:
        schema["pattern"] = pattern
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def query_param(name: str, schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
    if description is not None:
        param["description"] = description
    return param
