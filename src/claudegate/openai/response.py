"""Claude's reply as an OpenAI ``chat.completion``.

Text blocks make ``content``; ``tool_use`` blocks make ``tool_calls`` (input serialised as the
``arguments`` string); thinking is returned as ``reasoning_content``, where OpenAI-compatible servers
(vLLM, DeepSeek, LiteLLM) put a model's reasoning. ``usage.prompt_tokens`` counts every input token,
cached or not, as OpenAI's does, and ``prompt_tokens_details.cached_tokens`` the part read from the cache.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

__all__ = ["completion_from_message", "completion_id", "finish_reason", "openai_usage"]

_FINISH: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None) -> str:
    return _FINISH.get(stop_reason or "end_turn", "stop")


def completion_id(message_id: str | None) -> str:
    """``chatcmpl-…`` from the message's id, so a completion can be traced to the upstream's message."""
    return "chatcmpl-" + (message_id or "").removeprefix("msg_")


def openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's usage object from Anthropic's (missing counts are 0)."""
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + (usage.get("cache_creation_input_tokens") or 0) + cached
    completion = usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def completion_from_message(message: dict[str, Any], created: int) -> dict[str, Any]:
    """The ``chat.completion`` for an Anthropic ``message``, made at ``created`` (Unix seconds)."""
    texts: list[str] = []
    thinking: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            thinking.append(block.get("thinking", ""))
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        reply["tool_calls"] = tool_calls
    if thinking:
        reply["reasoning_content"] = "".join(thinking)
    return {
        "id": completion_id(message.get("id")),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason")),
            }
        ],
        "usage": openai_usage(message.get("usage") or {}),
    }
