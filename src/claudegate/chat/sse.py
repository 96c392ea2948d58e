"""The chat API's stream: server-sent events with one JSON ``data`` line each, made for browsers and apps.

    data: {"token": "Hel", "done": false}
    data: {"token": "lo", "done": false}
    data: {"token": "", "done": true, "chat_id": …, "message_id": …, "fullText": "Hello", "usage": {…}}

A failure ends the stream with one event carrying ``error`` (and ``done: true``) instead of the last one:

    data: {"token": "", "done": true, "chat_id": …, "error": {"type": "overloaded_error", "message": …}}

There is no ``event:`` field: a browser's EventSource then delivers every event to ``onmessage``, and an
``event: error`` would collide with EventSource's own connection-error event. Comments (``: ping``) keep
idle connections open through proxies while the model is thinking.

The reply itself is read back from Anthropic's stream by ``wire.message_fold.MessageFold``, the fold the
in-process client's stream helper uses too.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

__all__ = ["PING", "done_event", "error_event", "token_event"]

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
