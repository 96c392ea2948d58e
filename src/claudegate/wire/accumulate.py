"""A streamed reply folded into the Message it describes: a pure function of (event, snapshot), apart from
any I/O, that every consumer of a stream shares (the in-process client's stream helper, and later bots and
chat), as the official SDK does.

The rules follow Anthropic's stream (shared reference, section 2) and the SDK's own accumulator:

- ``message_start`` carries the message with empty content: it becomes the snapshot.
- ``content_block_start`` appends its block at ``index``; deltas extend the block at ``index``: text,
  thinking and citations are appended, a signature replaces the block's, and the partial JSON of a tool's
  input is concatenated and parsed (partially, so the snapshot shows the input as it grows).
- ``message_delta`` sets the stop reason, stop sequence and stop details, and any other field it carries;
  its usage counts are cumulative totals, so they replace the snapshot's; a count it leaves out (None) keeps
  the value ``message_start`` gave.
- ``content_block_stop``, ``message_stop``, ``ping`` and unknown events change nothing.

This module imports the SDK's types: import it only where the SDK is wanted (the ``claudegate`` package
itself stays free of it at import time).
"""

from __future__ import annotations

import jiter
from anthropic.types import (
    CitationsDelta,
    InputJSONDelta,
    Message,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStreamEvent,
    ServerToolUseBlock,
    SignatureDelta,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
)

__all__ = ["JsonBuffers", "accumulate_event"]

JsonBuffers = dict[int, bytes]
"""The partial JSON of each tool-use block's input seen so far, by block index."""

# Fields of a message_delta's ``delta`` that describe how the message stopped: set even when null, since
# null is their answer. Others (``container``) are set only when given.
_STOP_FIELDS = frozenset({"stop_reason", "stop_sequence", "stop_details"})


def accumulate_event(
    event: RawMessageStreamEvent, snapshot: Message | None, json_buffers: JsonBuffers
) -> Message:
    """The snapshot with ``event`` folded in.

    The snapshot is updated in place and returned (copying a growing message at every delta would make a
    stream quadratic); ``message_start`` returns a new one. Pass the same ``json_buffers`` dict for every
    event of one stream. Raises RuntimeError for an event before ``message_start``, and ValueError when a
    tool's input is not valid JSON.
    """
    if isinstance(event, RawMessageStartEvent):
        json_buffers.clear()
        return event.message.model_copy(deep=True)
    if snapshot is None:
        raise RuntimeError(f"unexpected event order: {event.type} before message_start")
    if isinstance(event, RawContentBlockStartEvent):
        snapshot.content.append(event.content_block.model_copy(deep=True))
    elif isinstance(event, RawContentBlockDeltaEvent):
        _apply_delta(snapshot, event, json_buffers)
    elif isinstance(event, RawMessageDeltaEvent):
        for name, value in event.delta:
            if value is not None or name in _STOP_FIELDS:
                setattr(snapshot, name, value)
        for name, value in event.usage:
            if value is not None:
                setattr(snapshot.usage, name, value)
    return snapshot


def _apply_delta(snapshot: Message, event: RawContentBlockDeltaEvent, json_buffers: JsonBuffers) -> None:
    block = snapshot.content[event.index]
    delta = event.delta
    if isinstance(delta, TextDelta):
        if isinstance(block, TextBlock):
            block.text += delta.text
    elif isinstance(delta, InputJSONDelta):
        if isinstance(block, ToolUseBlock | ServerToolUseBlock):
            buffer = json_buffers.get(event.index, b"") + delta.partial_json.encode()
            json_buffers[event.index] = buffer
            if buffer:
                try:
                    block.input = jiter.from_json(buffer, partial_mode=True)
                except ValueError as error:
                    raise ValueError(
                        f"the tool input streamed for block {event.index} is not valid JSON ({error}): "
                        f"{buffer.decode(errors='replace')}"
                    ) from None
    elif isinstance(delta, CitationsDelta):
        if isinstance(block, TextBlock):
            if block.citations:
                block.citations.append(delta.citation)
            else:
                block.citations = [delta.citation]
    elif isinstance(delta, ThinkingDelta):
        if isinstance(block, ThinkingBlock):
            block.thinking += delta.thinking
    elif isinstance(delta, SignatureDelta) and isinstance(block, ThinkingBlock):
        block.signature = delta.signature
