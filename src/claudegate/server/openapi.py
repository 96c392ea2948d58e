"""The OpenAPI description of every route the gateway serves, answered at ``GET /openapi.json``.

Written as data rather than generated: the gateway's routes are hand-dispatched string comparisons (see
``gateway.py``), with no framework that could describe them, and Anthropic's own request and reply shapes
belong to Anthropic (the SDKs' types are the reference; this describes them only as far as a client or a
fuzzer needs to call them). Every route is here; the test suite fuzzes all of them against a running gateway
(``tests/e2e/test_openapi_fuzz.py``).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

import orjson

__all__ = ["openapi_json", "openapi_spec"]

_JSON: Final = "application/json"
_SSE: Final = "text/event-stream"

_ERROR: Final[dict[str, Any]] = {
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

_CONTENT_BLOCK: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"type": "string", "examples": ["text"]}, "text": {"type": "string"}},
}
_MESSAGE_PARAM: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"enum": ["user", "assistant"]},
        "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": _CONTENT_BLOCK}]},
    },
}
_MESSAGES_REQUEST: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["model", "max_tokens", "messages"],
    "properties": {
        "model": {"type": "string", "examples": ["claude-sonnet-4-6"]},
        "max_tokens": {"type": "integer", "minimum": 1},
        "messages": {"type": "array", "items": _MESSAGE_PARAM},
        "system": {"oneOf": [{"type": "string"}, {"type": "array", "items": _CONTENT_BLOCK}]},
        "stream": {"type": "boolean"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "top_p": {"type": "number"},
        "top_k": {"type": "integer"},
        "stop_sequences": {"type": "array", "items": {"type": "string"}},
        "metadata": {"type": "object", "properties": {"user_id": {"type": "string"}}},
        "tools": {"type": "array", "items": {"type": "object"}},
        "tool_choice": {"type": "object"},
        "thinking": {"type": "object"},
    },
}
_COUNT_TOKENS_REQUEST: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        k: v for k, v in _MESSAGES_REQUEST["properties"].items() if k not in ("max_tokens", "stream")
    },
}
_BATCH_REQUEST: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["requests"],
    "properties": {
        "requests": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["custom_id", "params"],
                "properties": {"custom_id": {"type": "string"}, "params": _MESSAGES_REQUEST},
            },
        }
    },
}
_CHAT_REQUEST: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["message"],
    "properties": {
        "message": {"oneOf": [{"type": "string"}, {"type": "array", "items": _CONTENT_BLOCK}]},
        "chat_id": {"type": "string"},
        "model": {"type": "string"},
        "max_tokens": {"type": "integer", "minimum": 1},
        "system": {"type": "string"},
        "prompt": {"type": "string"},
        "temperature": {"type": "number"},
    },
}
_LIMITS: Final[dict[str, Any]] = {
    "requests_per_minute": {"type": ["integer", "null"], "minimum": 1},
    "tokens_per_minute": {"type": ["integer", "null"], "minimum": 1},
    "max_concurrency": {"type": ["integer", "null"], "minimum": 1},
    "weight": {"type": ["number", "null"]},
}
_BUDGET: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "daily_tokens": {"type": ["integer", "null"]},
        "monthly_tokens": {"type": ["integer", "null"]},
        "daily_usd": {"type": ["number", "string", "null"]},
        "monthly_usd": {"type": ["number", "string", "null"]},
    },
}
_NAME: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}},
}
_PROMPT_VERSION: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["system"],
    "properties": {
        "system": {"type": "string"},
        "model": {"type": "string"},
        "note": {"type": "string"},
        "activate": {"type": "boolean"},
    },
}
_PAGE: Final[list[dict[str, Any]]] = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
    {"name": "before_id", "in": "query", "schema": {"type": "string"}},
    {"name": "after_id", "in": "query", "schema": {"type": "string"}},
]


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {_JSON: {"schema": schema}}}


def _op(
    summary: str,
    *,
    tag: str,
    security: str | None,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    ok: str = "200",
    streams: bool = False,
) -> dict[str, Any]:
    content: dict[str, Any] = {_JSON: {"schema": {"type": "object"}}}
    if streams:
        content[_SSE] = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {ok: {"description": "Success", "content": content}}
    if security is not None or body is not None or params:
        responses["4XX"] = {"description": "An error", "content": {_JSON: {"schema": _ERROR}}}
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if security is not None:
        operation["security"] = [{security: []}]
    if body is not None:
        operation["requestBody"] = _body(body)
    if params:
        operation["parameters"] = params
    return operation


def _path(name: str, description: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if pattern is not None:
        schema["pattern"] = pattern
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def _anthropic_paths() -> dict[str, Any]:
    key = "gatewayKey"
    batch = [_path("batch_id", "A message batch id (msgbatch_…)", r"^msgbatch_[A-Za-z0-9]{1,100}$")]
    return {
        "/v1/messages": {
            "post": _op(
                "Create a message (JSON or SSE)",
                tag="anthropic",
                security=key,
                body=_MESSAGES_REQUEST,
                streams=True,
            )
        },
        "/v1/messages/count_tokens": {
            "post": _op(
                "Count a request's input tokens", tag="anthropic", security=key, body=_COUNT_TOKENS_REQUEST
            )
        },
        "/v1/models": {"get": _op("List models", tag="anthropic", security=key, params=_PAGE)},
        "/v1/models/{model_id}": {
            "get": _op(
                "Get a model",
                tag="anthropic",
                security=key,
                params=[_path("model_id", "A model id or alias", r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")],
            )
        },
        "/v1/messages/batches": {
            "post": _op("Create a message batch", tag="anthropic", security=key, body=_BATCH_REQUEST),
            "get": _op(
                "List the organisation's message batches", tag="anthropic", security=key, params=_PAGE
            ),
        },
        "/v1/messages/batches/{batch_id}": {
            "get": _op("Get a message batch", tag="anthropic", security=key, params=batch),
            "delete": _op("Delete a message batch", tag="anthropic", security=key, params=batch),
        },
        "/v1/messages/batches/{batch_id}/cancel": {
            "post": _op("Cancel a message batch", tag="anthropic", security=key, params=batch)
        },
        "/v1/messages/batches/{batch_id}/results": {
            "get": _op("A message batch's results (JSON lines)", tag="anthropic", security=key, params=batch)
        },
    }


def _chat_paths() -> dict[str, Any]:
    key = "gatewayKey"
    user = {"name": "x-user-id", "in": "header", "schema": {"type": "string"}, "description": "The end user"}
    chat = [_path("chat_id", "A conversation id (chat_…)", r"^chat_[A-Za-z0-9]{1,34}$"), user]
    return {
        "/chat": {
            "post": _op(
                "Ask in a conversation (JSON)", tag="chat", security=key, body=_CHAT_REQUEST, params=[user]
            )
        },
        "/chat/stream": {
            "post": _op(
                "Ask in a conversation (SSE)",
                tag="chat",
                security=key,
                body=_CHAT_REQUEST,
                params=[user],
                streams=True,
            )
        },
        "/chats": {"get": _op("List conversations", tag="chat", security=key, params=[*_PAGE, user])},
        "/chats/{chat_id}": {
            "get": _op("Get a conversation", tag="chat", security=key, params=chat),
            "delete": _op("Delete a conversation", tag="chat", security=key, params=chat),
        },
    }


def _admin_paths() -> dict[str, Any]:
    admin = "adminToken"
    org = [_path("org", "An organisation name")]
    user = [*org, _path("user", "A user name")]
    prompt = [*org, _path("name", "A prompt name")]
    key_id = [{"name": "key_id", "in": "path", "required": True, "schema": {"type": "integer"}}]
    settings = {"type": "object", "properties": _LIMITS}
    key_body = {
        "type": "object",
        "required": ["org"],
        "properties": {
            "org": {"type": "string"},
            "user": {"type": "string"},
            "name": {"type": "string"},
            "deadline_ms": {"type": ["integer", "null"]},
            "priority": {"type": ["integer", "null"]},
            "act_for_users": {"type": "boolean"},
            "cache_replies": {"type": ["boolean", "null"]},
            **_LIMITS,
        },
    }
    usage_params = [
        {"name": "group_by", "in": "query", "schema": {"enum": ["model", "day", "user", "key"]}},
        {"name": "since", "in": "query", "schema": {"type": "string"}},
        {"name": "org", "in": "query", "schema": {"type": "string"}},
    ]
    return {
        "/admin/organizations": {
            "get": _op("List organisations", tag="admin", security=admin),
            "post": _op("Create an organisation", tag="admin", security=admin, body=_NAME, ok="201"),
        },
        "/admin/organizations/{org}": {
            "patch": _op(
                "Change an organisation's limits", tag="admin", security=admin, params=org, body=settings
            )
        },
        "/admin/organizations/{org}/users": {
            "get": _op("List an organisation's users", tag="admin", security=admin, params=org),
            "post": _op("Create a user", tag="admin", security=admin, params=org, body=_NAME, ok="201"),
        },
        "/admin/organizations/{org}/users/{user}": {
            "patch": _op("Change a user's limits", tag="admin", security=admin, params=user, body=settings)
        },
        "/admin/keys": {
            "get": _op(
                "List keys",
                tag="admin",
                security=admin,
                params=[{"name": "org", "in": "query", "schema": {"type": "string"}}],
            ),
            "post": _op("Create a key (shown once)", tag="admin", security=admin, body=key_body, ok="201"),
        },
        "/admin/keys/{key_id}": {
            "patch": _op("Change a key's settings", tag="admin", security=admin, params=key_id, body=key_body)
        },
        "/admin/keys/{key_id}/revoke": {
            "post": _op("Revoke a key", tag="admin", security=admin, params=key_id)
        },
        "/admin/usage": {"get": _op("Usage report", tag="admin", security=admin, params=usage_params)},
        "/admin/organizations/{org}/prompts": {
            "get": _op("List prompts", tag="admin", security=admin, params=org),
            "post": _op(
                "Create a prompt",
                tag="admin",
                security=admin,
                params=org,
                body={
                    **_PROMPT_VERSION,
                    "required": ["name", "system"],
                    "properties": {**_PROMPT_VERSION["properties"], "name": {"type": "string"}},
                },
                ok="201",
            ),
        },
        "/admin/organizations/{org}/prompts/{name}": {
            "get": _op("Get a prompt and its versions", tag="admin", security=admin, params=prompt)
        },
        "/admin/organizations/{org}/prompts/{name}/versions": {
            "post": _op(
                "Add a prompt version",
                tag="admin",
                security=admin,
                params=prompt,
                body=_PROMPT_VERSION,
                ok="201",
            )
        },
        "/admin/organizations/{org}/prompts/{name}/activate": {
            "post": _op(
                "Activate a version",
                tag="admin",
                security=admin,
                params=prompt,
                body={
                    "type": "object",
                    "required": ["version"],
                    "properties": {"version": {"type": "integer"}},
                },
            )
        },
        "/admin/organizations/{org}/prompts/{name}/rollback": {
            "post": _op("Go back to the previous version", tag="admin", security=admin, params=prompt)
        },
        "/admin/organizations/{org}/prompts/{name}/split": {
            "put": _op(
                "Split traffic between versions",
                tag="admin",
                security=admin,
                params=prompt,
                body={"type": "object", "properties": {"weights": {"type": ["object", "null"]}}},
            )
        },
        "/admin/organizations/{org}/prompts/{name}/usage": {
            "get": _op("Usage per prompt version", tag="admin", security=admin, params=prompt)
        },
        "/admin/organizations/{org}/budget": {
            "get": _op("An organisation's budget and spend", tag="admin", security=admin, params=org),
            "patch": _op(
                "Change an organisation's budget", tag="admin", security=admin, params=org, body=_BUDGET
            ),
        },
        "/admin/organizations/{org}/users/{user}/budget": {
            "get": _op("A user's budget and spend", tag="admin", security=admin, params=user),
            "patch": _op("Change a user's budget", tag="admin", security=admin, params=user, body=_BUDGET),
        },
    }


def _operations_paths() -> dict[str, Any]:
    text = {"200": {"description": "Success", "content": {"text/plain": {"schema": {"type": "string"}}}}}
    return {
        "/health": {"get": _op("Liveness", tag="operations", security=None)},
        "/health/ready": {"get": _op("Readiness (database, upstreams)", tag="operations", security=None)},
        "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["operations"], "responses": text}},
        "/openapi.json": {"get": _op("This description", tag="operations", security=None)},
    }


@cache
def openapi_spec(version: str) -> dict[str, Any]:
    """The description as a dict (made once)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "claudegate",
            "version": version,
            "description": (
                "Anthropic's Messages API (with batches, models and token counting) behind gateway keys, "
                "a chat API with stored conversations, an admin API, health and metrics. Errors use "
                "Anthropic's envelope; those the gateway makes itself carry x-claudegate-origin: gateway."
            ),
        },
        "components": {
            "securitySchemes": {
                "gatewayKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "adminToken": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {"Error": _ERROR},
        },
        "paths": {**_anthropic_paths(), **_chat_paths(), **_admin_paths(), **_operations_paths()},
    }


@cache
def openapi_json(version: str) -> bytes:
    return orjson.dumps(openapi_spec(version))
