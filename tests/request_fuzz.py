"""Requests to break things with: a rich valid Messages request, and hypothesis strategies that rewrite
one part of it at a time with a value of another type (the mistakes clients make), or drop it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

__all__ = ["HEADERS", "HEADER_TEXT", "JSON_VALUES", "PATHS", "VALID", "at", "look_alikes", "rewritten"]

HEADERS = {"x-api-key": "sk-fuzz", "anthropic-version": "2023-06-01", "content-type": "application/json"}
VALID: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 3000,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "5m"}}],
    "messages": [
        {"role": "user", "content": "What is the weather in Paris? Use get_weather."},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18 C", "is_error": False},
                {"type": "text", "text": "And tomorrow?"},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
            ],
        },
    ],
    "tools": [
        {
            "name": "get_weather",
            "description": "Weather at a place.",
            "strict": True,
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": False},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "temperature": 1.0,
    "stop_sequences": ["STOP"],
    "metadata": {"user_id": "u-1"},
    "output_config": {"effort": "high"},
    "service_tier": "auto",
    "stream": False,
}

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=30
)


def paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every place in a JSON value: keys of objects and positions in lists, depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from paths(item, (*prefix, index))


PATHS = list(paths(VALID))


def at(path: tuple[str | int, ...]) -> Any:
    node: Any = VALID
    for part in path:
        node = node[part]
    return node


def look_alikes(original: Any) -> list[Any]:
    """Values of the wrong type that a client could send by mistake in place of ``original``."""
    found: list[Any] = [json.dumps(original), [original], {"value": original}, None]
    if isinstance(original, bool):
        found += ["true", 1, 0]
    elif isinstance(original, int | float):
        found += [str(original), float(original) + 0.5, -original - 1, 10**30, 0, True]
    elif isinstance(original, str):
        found += [1, True, "", original * 2000]
    return found


def rewritten(path: tuple[str | int, ...], value: Any, drop: bool) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(VALID))
    parent: Any = body
    for part in path[:-1]:
        parent = parent[part]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return body
