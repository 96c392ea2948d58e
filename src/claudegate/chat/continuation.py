"""Continuation of a chat reply stopped by ``max_tokens`` (``POST /chat`` and ``POST /chat/stream`` with
``max_continuations``).

The reply's text so far is sent back as the start of the assistant's turn and the model goes on from there,
up to ``max_continuations`` times; the pieces are stored and answered as one reply whose text is the whole
answer, whose stop reason is the last piece's, and whose usage is the sum of every call's (each call also has
its own usage record). A continuation that fails ends the continuing: the reply is what came so far.

On ``/chat/stream`` each continuation is read through a ``ChatStreamSink`` writing to the response already
open, so the client's stream of tokens simply goes on until the whole answer has come.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import Receive

from claudegate.chat.sink import ChatStreamSink, ReplyBuffer
from claudegate.errors import ClaudegateError
from claudegate.pipeline.relay import ReplyResult, UpstreamDropped
from claudegate.pipeline.request import new_request_id
from claudegate.pipeline.sink import RawHeaders

if TYPE_CHECKING:
    from claudegate.chat.request import Caller
    from claudegate.chat.service import ChatService, Turn

__all__ = ["continue_reply", "streamed_message"]

logger = logging.getLogger(__name__)


async def continue_reply(
    service: ChatService,
    caller: Caller,
    turn: Turn,
    result: ReplyResult,
    message: dict[str, Any],
    *,
    headers: RawHeaders,
    receive: Receive,
    new_sink: Callable[[], ReplyBuffer] | None = None,
) -> dict[str, Any]:
    """``message`` (a reply stopped by max_tokens) continued; ``result`` gains the continuations' usage.
    ``new_sink``: where each continuation's reply goes (default: a ``ReplyBuffer`` kept whole)."""
    first = message
    text = _text(message)
    for _ in range(turn.max_continuations):
        prefill = text.rstrip()  # the API refuses a final assistant turn ending in whitespace
        if message.get("stop_reason") != "max_tokens" or not prefill:
            break
        messages = [*turn.body["messages"], {"role": "assistant", "content": prefill}]
        call = service.call_for(
            caller,
            replace(turn, body={**turn.body, "messages": messages}),
            request_id=new_request_id(),
            headers=headers,
        )
        sink = new_sink() if new_sink is not None else ReplyBuffer(receive)
        sink.watch()
        try:
            more = await service.run(call, sink)
        except (ClaudegateError, UpstreamDropped) as error:
            logger.info(
                "chat %s: a continuation failed (%s); the reply is what came so far", turn.chat_id, error
            )
            break
        finally:
            sink.close()
        result.usage = result.usage.plus(more.usage)  # a piece cut short was still paid for
        piece = _piece(sink)
        if more.client_gone or piece is None:
            break
        message = piece
        text = prefill + _text(message)
    if message is first:
        return first
    others = [block for block in first.get("content") or [] if block.get("type") != "text"]
    return {**message, "content": [*others, {"type": "text", "text": text}]}


def streamed_message(sink: ChatStreamSink) -> dict[str, Any] | None:
    """The message a streamed reply described, or None unless it came whole."""
    builder = sink.builder
    if not sink.streaming or not builder.completed:
        return None
    return {"content": builder.content, "stop_reason": builder.stop_reason, "model": builder.model}


def _piece(sink: ReplyBuffer) -> dict[str, Any] | None:
    if isinstance(sink, ChatStreamSink):
        return streamed_message(sink)
    if sink.status != 200:
        return None
    try:
        message = orjson.loads(sink.body)
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None


def _text(message: dict[str, Any]) -> str:
    return "".join(
        str(block.get("text", "")) for block in message.get("content") or [] if block.get("type") == "text"
    )
