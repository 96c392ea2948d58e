"""The OpenAPI description of the OpenAI-compatible routes (``server/openai_routes.py``):
``POST /v1/chat/completions``, and the OpenAI shape of ``GET /v1/models`` (which ``openapi.py`` describes
beside Anthropic's, the two sharing their paths)."""

from __future__ import annotations

from typing import Any, Final

from claudegate.server.openapi_ops import JSON, OPENAI_ERROR, SSE, op

__all__ = ["OPENAI_MODEL", "OPENAI_MODEL_LIST", "openai_paths"]

OPENAI_MODEL: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["id", "object", "created", "owned_by"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "model"},
        "created": {"type": "integer"},
        "owned_by": {"type": "string"},
    },
}
OPENAI_MODEL_LIST: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": OPENAI_MODEL}},
}

_CONTENT: Final[dict[str, Any]] = {
    "oneOf": [
        {"type": "string"},
        {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"enum": ["text", "image_url"]},
                    "text": {"type": "string"},
                    "image_url": {"type": "object", "properties": {"url": {"type": "string"}}},
                },
            },
        },
        {"type": "null"},
    ]
}
_MESSAGE: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": _CONTENT,
        "name": {"type": "string"},
        "tool_calls": {"type": "array", "items": {"type": "object"}},
        "tool_call_id": {"type": "string"},
    },
}
# What translate_request accepts (claudegate/openai/request.py); any other parameter is a 400 naming it.
_REQUEST: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["model", "messages"],
    "additionalProperties": False,
    "properties": {
        "model": {"type": "string", "examples": ["claude-sonnet-4-6"]},
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "top_p": {"type": "number"},
        "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "user": {"type": "string"},
        "safety_identifier": {"type": "string"},
        "metadata": {"type": "object"},
        "tools": {"type": "array", "items": {"type": "object"}},
        "tool_choice": {"oneOf": [{"enum": ["auto", "none", "required"]}, {"type": "object"}]},
        "parallel_tool_calls": {"type": "boolean"},
        "response_format": {
            "type": "object",
            "properties": {"type": {"enum": ["text", "json_object", "json_schema"]}},
        },
        "reasoning_effort": {"enum": ["none", "minimal", "low", "medium", "high", "xhigh"]},
        "n": {"const": 1},
        "seed": {"type": "integer", "description": "Accepted and ignored"},
        "prompt_cache_key": {"type": "string", "description": "Accepted and ignored"},
        "prompt_cache_retention": {"type": "string", "description": "Accepted and ignored"},
        "service_tier": {"type": "string", "description": "Accepted and ignored"},
        "store": {"const": False},
        # Accepted only at the value that changes nothing (Claude cannot honour any other: a 400 names it).
        "logprobs": {"const": False},
        "top_logprobs": {"const": 0},
        "presence_penalty": {"const": 0},
        "frequency_penalty": {"const": 0},
        "logit_bias": {"type": "object", "maxProperties": 0},
        "modalities": {"const": ["text"]},
        "audio": {"type": "null"},
    },
}
_COMPLETION: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "chat.completion"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": "object"},
    },
}


def openai_paths() -> dict[str, Any]:
    return {
        "/v1/chat/completions": {
            "post": op(
                "Create a chat completion (OpenAI's API; JSON, or SSE chunks with stream: true)",
                tag="openai",
                security=["gatewayBearer", "gatewayKey"],
                body=_REQUEST,
                reply={JSON: {"schema": _COMPLETION}, SSE: {"schema": {"type": "string"}}},
                error=OPENAI_ERROR,
                description=(
                    "Translated to a Messages call and run by the same pipeline (limits, budgets, retries, "
                    "one usage record). Parameters Claude cannot honour (n > 1, logprobs, penalties, "
                    "logit_bias, audio, store: true, any unknown one) get a 400 naming them. Every error, "
                    "the gateway's own included, is in OpenAI's envelope."
                ),
            )
        },
    }
