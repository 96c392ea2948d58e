"""The chat API's stream: server-sent events with one JSON ``data`` line each, made for browsers and apps.

    data: {"token": "Hel", "done": false}
    data: {"token": "lo", "done": false}
    data: {"token": "", "done": true, "chat_id": …, "message_id": …, "fullText": "Hello", "usage": {…}}

A failure ends the stream with one event carrying ``error`` (and ``done: true``) instead of the last one:

    data: {"token": "", "done": true, "chat_id": …, "error": {"type": "overloaded_error", "message": …}}

There is no ``event:`` field: a browser's EventSource then delivers every event to ``onmessage``, and an
``event: error`` would collide with EventSource's own connection-error event. Comments (``: ping``) keep
idle connections open through proxies while the model is thinking.

Also here: the reply read back from Anthropic's stream, a pure fold of its events into the message they
describe (the SDK's accumulator, on plain dicts, since the gateway does not depend on the SDK).
"""

from __future__ import annotations

from typing import Any, Final

import orjson

__all__ = ["PING", "MessageBuilder", "done_event", "error_event", "token_event"]

PING: Final = b": ping\n\n"


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def token_event(text: str) -> bytes:
    return _event({"token": text, "done": False})


def done_event(
    *,
    chat_id: str,
    message_id: str,
    full_text: str,
    usage: dict[str, int],
    extra: dict[str, Any] | None = None,
) -> bytes:
    data: dict[str, Any] = {
        "token": "",
        "done": True,
        "chat_id": chat_id,
        "message_id": message_id,
        "fullText": full_text,
        "usage": usage,
    }
    if extra:
        data.update(extra)
    return _event(data)


def error_event(*, chat_id: str | None, error_type: str, message: str) -> bytes:
    return _event(
        {"token": "", "done": True, "chat_id": chat_id, "error": {"type": error_type, "message": message}}
    )


class MessageBuilder:
    """Fold Anthropic stream events (name, data) into the message they describe.

    ``completed``: ``message_stop`` arrived and no ``error`` did. ``error``: the type and message of an
    ``error`` event.
    """

    __slots__ = ("_json", "completed", "content", "error", "model", "stop_reason")

    def __init__(self) -> None:
        self.content: list[dict[str, Any]] = []
        self.stop_reason: str | None = None
        self.model: str | None = None
        self.completed = False
        self.error: tuple[str, str] | None = None
        self._json: dict[int, str] = {}

    def feed(self, name: str | None, data: bytes) -> str | None:
        """Apply one event; returns the text it adds to a text block, if any."""
        if name in (None, "ping") or not data:
            return None
        event = orjson.loads(data)
        kind = event.get("type", name)
        if kind == "message_start":
            message = event.get("message") or {}
            self.model = message.get("model")
        elif kind == "content_block_start":
            block = dict(event.get("content_block") or {})
            if block.get("type") == "tool_use":
                block["input"] = {}
            self.content.append(block)
        elif kind == "content_block_delta":
            return self._delta(int(event.get("index", len(self.content) - 1)), event.get("delta") or {})
        elif kind == "content_block_stop":
            index = int(event.get("index", len(self.content) - 1))
            buffered = self._json.pop(index, None)
            if buffered and 0 <= index < len(self.content):
                self.content[index]["input"] = orjson.loads(buffered)
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            if "stop_reason" in delta:
                self.stop_reason = delta["stop_reason"]
        elif kind == "message_stop":
            self.completed = self.error is None
        elif kind == "error":
            error = event.get("error") or {}
            self.error = (str(error.get("type", "api_error")), str(error.get("message", "")))
            self.completed = False
        return None

    def _delta(self, index: int, delta: dict[str, Any]) -> str | None:
        if not 0 <= index < len(self.content):
            return None
        block = self.content[index]
        kind = delta.get("type")
        if kind == "text_delta":
            text = str(delta.get("text", ""))
            block["text"] = block.get("text", "") + text
            return text
        if kind == "input_json_delta":
            self._json[index] = self._json.get(index, "") + str(delta.get("partial_json", ""))
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + str(delta.get("thinking", ""))
        elif kind == "signature_delta":
            block["signature"] = delta.get("signature", "")
        elif kind == "citations_delta":
            if not isinstance(block.get("citations"), list):
                block["citations"] = []
            block["citations"].append(delta.get("citation"))
        return None
