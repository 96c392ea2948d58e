"""The events a message stream helper yields: each raw event, and the convenience events the SDK's
``messages.stream()`` adds after it (``text``, ``input_json``, ``thinking``, ``signature``, ``citation``, and
``content_block_stop`` / ``message_stop`` carrying the finished block or message), derived from the event
and the snapshot it was folded into.

The SDK exports ``TextEvent``, ``InputJsonEvent``, ``ContentBlockStopEvent`` and ``MessageStopEvent``
publicly (``anthropic.lib.streaming``), and they are used as they are; its thinking, signature and
citation events live in a private module, so equivalents with the same fields are defined here.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

from anthropic import BaseModel
from anthropic.lib.streaming import ContentBlockStopEvent, InputJsonEvent, MessageStopEvent, TextEvent
from anthropic.types import (
    CitationsDelta,
    InputJSONDelta,
    Message,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    ServerToolUseBlock,
    SignatureDelta,
    TextBlock,
    TextCitation,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
)

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


def build_events(event: RawMessageStreamEvent, snapshot: Message) -> list[MessageStreamEvent]:
    """The events to yield for ``event``, already folded into ``snapshot``."""
    if isinstance(event, RawMessageStopEvent):
        return [MessageStopEvent.construct(type="message_stop", message=snapshot)]
    if isinstance(event, RawContentBlockStopEvent):
        block = snapshot.content[event.index]
        return [
            ContentBlockStopEvent.construct(type="content_block_stop", index=event.index, content_block=block)
        ]
    if not isinstance(event, RawContentBlockDeltaEvent):
        return [event]
    events: list[MessageStreamEvent] = [event]
    block = snapshot.content[event.index]
    delta = event.delta
    if isinstance(delta, TextDelta) and isinstance(block, TextBlock):
        events.append(TextEvent.construct(type="text", text=delta.text, snapshot=block.text))
    elif isinstance(delta, InputJSONDelta) and isinstance(block, ToolUseBlock | ServerToolUseBlock):
        events.append(
            InputJsonEvent.construct(type="input_json", partial_json=delta.partial_json, snapshot=block.input)
        )
    elif isinstance(delta, CitationsDelta) and isinstance(block, TextBlock):
        events.append(
            CitationEvent.construct(type="citation", citation=delta.citation, snapshot=block.citations or [])
        )
    elif isinstance(delta, ThinkingDelta) and isinstance(block, ThinkingBlock):
        events.append(
            ThinkingEvent.construct(type="thinking", thinking=delta.thinking, snapshot=block.thinking)
        )
    elif isinstance(delta, SignatureDelta) and isinstance(block, ThinkingBlock):
        events.append(SignatureEvent.construct(type="signature", signature=block.signature))
    return events
