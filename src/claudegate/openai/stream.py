"""Claude's event stream as OpenAI's: ``chat.completion.chunk`` events, then ``data: [DONE]``.

    message_start                    → a chunk with ``delta: {"role": "assistant", "content": ""}``
    text_delta                       → ``delta.content``
    thinking_delta                   → ``delta.reasoning_content``
    content_block_start (tool_use)   → ``delta.tool_calls[i]`` with id, name and ``arguments: ""``
    input_json_delta                 → ``delta.tool_calls[i].function.arguments`` (the partial JSON)
    message_delta                    → a chunk with ``finish_reason``
    message_stop                     → the usage chunk (``choices: []``) if asked for, then ``[DONE]``
    error                            → ``data: {"error": …}`` in OpenAI's envelope, which the SDKs raise

``i`` counts tool calls from 0, as OpenAI's ``index`` does. Pings and signatures have no counterpart.
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson

from claudegate.openai.errors import translate_error
from claudegate.openai.response import completion_id, finish_reason, openai_usage

__all__ = ["DONE", "ChunkTranslator"]

DONE: Final = b"data: [DONE]\n\n"


class ChunkTranslator:
    """Feed it Anthropic's events one by one (name and data); it gives the OpenAI stream's bytes."""

    __slots__ = ("_created", "_finish", "_head", "_include_usage", "_tool_index", "_usage", "done")

    def __init__(self, *, include_usage: bool, created: int | None = None) -> None:
        self._include_usage = include_usage
        self._created = created if created is not None else int(time.time())
        self._head = b""  # the chunks' common opening: id, object, created, model
        self._tool_index: dict[int, int] = {}  # content block index → tool call index
        self._usage: dict[str, Any] = {}
        self._finish: str | None = None
        self.done = False  # the stream ended ([DONE] or an error was sent)

    def feed(self, name: str | None, data: bytes) -> bytes:
        if name in ("ping", None) or self.done:
            return b""
        event: dict[str, Any] = orjson.loads(data)
        kind = event.get("type", name)
        if kind == "content_block_delta":
            delta = event["delta"]
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                return self._chunk({"content": delta["text"]})
            if delta_type == "thinking_delta":
                return self._chunk({"reasoning_content": delta["thinking"]})
            if delta_type == "input_json_delta":
                index = self._tool_index.get(event["index"])
                if index is None or not delta["partial_json"]:
                    return b""
                return self._chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": delta["partial_json"]}}]}
                )
            return b""
        if kind == "content_block_start":
            block = event["content_block"]
            if block.get("type") != "tool_use":
                return b""
            index = self._tool_index[event["index"]] = len(self._tool_index)
            call = {
                "index": index,
                "id": block["id"],
                "type": "function",
                "function": {"name": block["name"], "arguments": ""},
            }
            return self._chunk({"tool_calls": [call]})
        if kind == "message_start":
            message = event["message"]
            self._usage.update(message.get("usage") or {})
            self._head = (
                b'{"id":'
                + orjson.dumps(completion_id(message.get("id")))
                + b',"object":"chat.completion.chunk","created":'
                + str(self._created).encode()
                + b',"model":'
                + orjson.dumps(message.get("model"))
            )
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "message_delta":
            self._usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            self._finish = finish_reason((event.get("delta") or {}).get("stop_reason"))
            return self._chunk({}, self._finish)
        if kind == "message_stop":
            self.done = True
            if not self._include_usage:
                return DONE
            usage = orjson.dumps(openai_usage(self._usage))
            return b"data: " + self._head + b',"choices":[],"usage":' + usage + b"}\n\n" + DONE
        if kind == "error":
            self.done = True
            error = event.get("error") or {}
            translated = translate_error(500, error.get("type"), error.get("message") or "stream error")
            return b"data: " + translated.body + b"\n\n"
        return b""

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + self._head + b',"choices":[' + orjson.dumps(choice) + b"]}\n\n"
