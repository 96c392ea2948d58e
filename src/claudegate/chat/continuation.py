"""Continuation of a chat reply stopped by ``max_tokens`` (``POST /chat`` with ``max_continuations``).

The reply's text so far is sent back as the start of the assistant's turn and the model goes on from there,
up to ``max_continuations`` times; the pieces are stored and answered as one reply whose text is the whole
answer, whose stop reason is the last piece's, and whose usage is the sum of every call's (each call also has
its own usage record). A continuation that fails ends the continuing: the reply is what came so far.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import Receive

from claudegate.chat.sink import ReplyBuffer
from claudegate.errors import ClaudegateError
from claudegate.pipeline.relay import ReplyResult, UpstreamDropped
from claudegate.pipeline.sink import RawHeaders
from claudegate.server.call import new_request_id

if TYPE_CHECKING:
    from claudegate.chat.request import Caller
    from claudegate.chat.service import ChatService, Turn

__all__ = ["continue_reply"]

logger = logging.getLogger(__name__)

_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


async def continue_reply(
    service: ChatService,
    caller: Caller,
    turn: Turn,
    result: ReplyResult,
    message: dict[str, Any],
    *,
    headers: RawHeaders,
    receive: Receive,
) -> dict[str, Any]:
    """``message`` (a reply stopped by max_tokens) continued; ``result`` gains the continuations' usage."""
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
        sink = ReplyBuffer(receive)
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
        if more.client_gone or sink.status != 200:
            break
        message = orjson.loads(sink.body)
        text = prefill + _text(message)
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ):
            setattr(result.usage, name, getattr(result.usage, name) + getattr(more.usage, name))
    if message is first:
        return first
    others = [block for block in first.get("content") or [] if block.get("type") != "text"]
    return {**message, "content": [*others, {"type": "text", "text": text}]}


def _text(message: dict[str, Any]) -> str:
    return "".join(
        str(block.get("text", "")) for block in message.get("content") or [] if block.get("type") == "text"
    )
