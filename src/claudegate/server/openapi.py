"""The OpenAPI description of every route the gateway serves, answered at ``GET /openapi.json``.

Written as data rather than generated: the gateway's routes are hand-dispatched string comparisons (see
``gateway.py``), with no framework that could describe them, and Anthropic's own request and reply shapes
belong to Anthropic (the SDKs' types are the reference; this describes them only as far as a client or a
fuzzer needs to call them). Every route is here, Anthropic's and the chat API's in this module, the others in
one module per API (``openapi_files``, ``openapi_openai``, ``openapi_admin``, ``openapi_console``). The test
suite fuzzes all of them against a running gateway and fails on a route the gateway serves that is not
described (``tests/e2e/test_openapi_fuzz.py``).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

import orjson

from claudegate.server.openapi_admin import admin_paths
from claudegate.server.openapi_console import CONSOLE_SECURITY_SCHEMES, console_paths
from claudegate.server.openapi_files import files_paths
from claudegate.server.openapi_openai import OPENAI_MODEL, OPENAI_MODEL_LIST, openai_paths
from claudegate.server.openapi_ops import ANTHROPIC_ERROR, OPENAI_ERROR, PAGE, op, path_param
from claudegate.server.openapi_ops import JSON as _JSON

__all__ = ["openapi_json", "openapi_spec"]

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
_VERSION: Final[dict[str, Any]] = {
    "name": "anthropic-version",
    "in": "header",
    "schema": {"type": "string", "examples": ["2023-06-01"]},
    "description": "Sent by Anthropic's SDKs; relayed to the upstream",
}
_MODELS_SHAPE: Final = (
    "Anthropic's answer, relayed from the upstream, to a client that sends anthropic-version or x-api-key "
    "(Anthropic's SDKs, Claude Code); the gateway's own catalogue in OpenAI's shape (and OpenAI's error "
    "envelope) to one that sends neither (OpenAI's SDKs send only Authorization: Bearer)."
)
_EITHER_ERROR: Final[dict[str, Any]] = {"oneOf": [ANTHROPIC_ERROR, OPENAI_ERROR]}
_KEY: Final = ["gatewayKey", "gatewayBearer"]  # a gateway key, in x-api-key or as a bearer token


def _anthropic_paths() -> dict[str, Any]:
    key = _KEY
    batch = [path_param("batch_id", "A message batch id (msgbatch_…)", r"^msgbatch_[A-Za-z0-9]{1,100}$")]
    return {
        "/v1/messages": {
            "post": op(
                "Create a message (JSON or SSE)",
                tag="anthropic",
                security=key,
                body=_MESSAGES_REQUEST,
                streams=True,
            )
        },
        "/v1/messages/count_tokens": {
            "post": op(
                "Count a request's input tokens", tag="anthropic", security=key, body=_COUNT_TOKENS_REQUEST
            )
        },
        "/v1/models": {
            "get": op(
                "List models (Anthropic's shape, or OpenAI's)",
                tag="anthropic",
                security=key,
                params=[*PAGE, _VERSION],
                reply={_JSON: {"schema": {"oneOf": [{"type": "object"}, OPENAI_MODEL_LIST]}}},
                description=_MODELS_SHAPE,
                error=_EITHER_ERROR,
            )
        },
        "/v1/models/{model_id}": {
            "get": op(
                "Get a model (Anthropic's shape, or OpenAI's)",
                tag="anthropic",
                security=key,
                params=[
                    path_param("model_id", "A model id or alias", r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"),
                    _VERSION,
                ],
                reply={_JSON: {"schema": {"oneOf": [{"type": "object"}, OPENAI_MODEL]}}},
                description=_MODELS_SHAPE,
                error=_EITHER_ERROR,
            )
        },
        "/v1/messages/batches": {
            "post": op("Create a message batch", tag="anthropic", security=key, body=_BATCH_REQUEST),
            "get": op("List the organisation's message batches", tag="anthropic", security=key, params=PAGE),
        },
        "/v1/messages/batches/{batch_id}": {
            "get": op("Get a message batch", tag="anthropic", security=key, params=batch),
            "delete": op("Delete a message batch", tag="anthropic", security=key, params=batch),
        },
        "/v1/messages/batches/{batch_id}/cancel": {
            "post": op("Cancel a message batch", tag="anthropic", security=key, params=batch)
        },
        "/v1/messages/batches/{batch_id}/results": {
            "get": op("A message batch's results (JSON lines)", tag="anthropic", security=key, params=batch)
        },
    }


def _chat_paths() -> dict[str, Any]:
    key = _KEY
    user = {"name": "x-user-id", "in": "header", "schema": {"type": "string"}, "description": "The end user"}
    chat = [path_param("chat_id", "A conversation id (chat_…)", r"^chat_[A-Za-z0-9]{1,34}$"), user]
    return {
        "/chat": {
            "post": op(
                "Ask in a conversation (JSON)", tag="chat", security=key, body=_CHAT_REQUEST, params=[user]
            )
        },
        "/chat/stream": {
            "post": op(
                "Ask in a conversation (SSE)",
                tag="chat",
                security=key,
                body=_CHAT_REQUEST,
                params=[user],
                streams=True,
            )
        },
        "/chats": {"get": op("List conversations", tag="chat", security=key, params=[*PAGE, user])},
        "/chats/{chat_id}": {
            "get": op("Get a conversation", tag="chat", security=key, params=chat),
            "delete": op("Delete a conversation", tag="chat", security=key, params=chat),
        },
    }


def _operations_paths() -> dict[str, Any]:
    text = {"200": {"description": "Success", "content": {"text/plain": {"schema": {"type": "string"}}}}}
    return {
        "/api/hello": {
            "get": op(
                "Connectivity check, relayed to the upstream",
                tag="operations",
                security=None,
                description="Claude Code asks it before it starts; the gateway relays it as it is.",
            )
        },
        "/health": {"get": op("Liveness", tag="operations", security=None)},
        "/health/ready": {"get": op("Readiness (database, upstreams)", tag="operations", security=None)},
        "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["operations"], "responses": text}},
        "/openapi.json": {"get": op("This description", tag="operations", security=None)},
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
                "Anthropic's Messages API (with batches, files, models and token counting) behind gateway "
                "keys, OpenAI's Chat Completions API, a chat API with stored conversations, an admin API, "
                "a web console, health and metrics. Errors use Anthropic's envelope (OpenAI's on the OpenAI "
                "routes); those the gateway makes itself carry x-claudegate-origin: gateway. Other /v1 "
                "routes are relayed to the upstream as they are, unless pass_unknown_routes is off."
            ),
        },
        "components": {
            "securitySchemes": {
                "gatewayKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "gatewayBearer": {"type": "http", "scheme": "bearer", "description": "A gateway key"},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "The admin token"},
                **CONSOLE_SECURITY_SCHEMES,
            },
            "schemas": {"Error": ANTHROPIC_ERROR, "OpenAIError": OPENAI_ERROR},
        },
        "paths": {
            **_anthropic_paths(),
            **openai_paths(),
            **files_paths(),
            **_chat_paths(),
            **admin_paths(),
            **console_paths(admin=admin_paths(), chat=_chat_paths()),
            **_operations_paths(),
        },
    }


@cache
def openapi_json(version: str) -> bytes:
    return orjson.dumps(openapi_spec(version))
