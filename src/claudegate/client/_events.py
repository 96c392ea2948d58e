"""The events a message stream helper yields: each raw event, and the convenience events the SDK's
``messages.stream()`` adds after it (``text``, ``input_json``, ``thinking``, ``signature``, ``citation``, and
``content_block_stop`` / ``message_stop`` carrying the finished block or message), derived from the event
and the snapshot it was folded into.

The SDK exports ``TextEvent``, ``InputJsonEvent``, ``ContentBlockStopEvent`` and ``MessageStopEvent``
publicly (``anthropic.lib.streaming``), and they are used as they are; its thinking, signature and
citation events live in a private module, so equivalents with the same fields are defined here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeAlias

from anthropic import BaseModel
from anthropic._models import construct_type
from anthropic.lib.streaming import ContentBlockStopEvent, InputJsonEvent, MessageStopEvent, TextEvent
from anthropic.types import (
    CitationsDelta,
    ContentBlock,
    InputJSONDelta,
    Message,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    SignatureDelta,
    TextCitation,
    TextDelta,
    ThinkingDelta,
)

from claudegate.wire.message_fold import MessageFold

__all__ = ["CitationEvent", "MessageStreamEvent", "SignatureEvent", "ThinkingEvent", "build_events"]


class ThinkingEvent(BaseModel):
    type: Literal["thinking"]
    thinking: str  # the delta
    snapshot: str  # the block's thinking so far


class SignatureEvent(BaseModel):
    type: Literal["signature"]
    signature: str


class CitationEvent(BaseModel):
    type: Literal["citation"]
    citation: TextCitation  # the new citation
    snapshot: list[TextCitation]  # the block's citations so far


MessageStreamEvent: TypeAlias = (
    TextEvent
    | CitationEvent
    | ThinkingEvent
    | SignatureEvent
    | InputJsonEvent
    | RawMessageStartEvent
    | RawMessageDeltaEvent
    | MessageStopEvent
    | RawContentBlockStartEvent
    | RawContentBlockDeltaEvent
    | ContentBlockStopEvent
)


def build_events(
    event: RawMessageStreamEvent, fold: MessageFold, snapshot: Callable[[], Message]
) -> list[MessageStreamEvent]:
    """The events to yield for ``event``, already folded into ``fold``; ``snapshot()`` types the message so
    far as the SDK's Message (made only for the events that carry it)."""
    if isinstance(event, RawMessageStopEvent):
        return [MessageStopEvent.construct(type="message_stop", message=snapshot())]
    if isinstance(event, RawContentBlockStopEvent):
        block = construct_type(type_=ContentBlock, value=fold.content[event.index])
        return [
            ContentBlockStopEvent.construct(type="content_block_stop", index=event.index, content_block=block)
        ]
    if not isinstance(event, RawContentBlockDeltaEvent):
        return [event]
    events: list[MessageStreamEvent] = [event]
    folded = fold.content[event.index]
    kind = folded.get("type")
    delta = event.delta
    if isinstance(delta, TextDelta) and kind == "text":
        events.append(TextEvent.construct(type="text", text=delta.text, snapshot=folded["text"]))
    elif isinstance(delta, InputJSONDelta) and kind in ("tool_use", "server_tool_use"):
        events.append(
            InputJsonEvent.construct(
                type="input_json", partial_json=delta.partial_json, snapshot=folded["input"]
            )
        )
    elif isinstance(delta, CitationsDelta) and kind == "text":
        citations = [construct_type(type_=TextCitation, value=c) for c in folded.get("citations") or []]
        events.append(CitationEvent.construct(type="citation", citation=delta.citation, snapshot=citations))
    elif isinstance(delta, ThinkingDelta) and kind == "thinking":
        events.append(
            ThinkingEvent.construct(type="thinking", thinking=delta.thinking, snapshot=folded["thinking"])
        )
    elif isinstance(delta, SignatureDelta) and kind == "thinking":
        events.append(SignatureEvent.construct(type="signature", signature=folded["signature"]))
    return events
