"""Folding a stream's events into the message they describe (claudegate.wire.message_fold), on Anthropic's
own recorded streams and on the edge cases of its rules; the message folded is read as the SDK's Message, as
the in-process client's stream helper reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from anthropic.types import Message, TextBlock, ThinkingBlock, ToolUseBlock

from claudegate.wire.message_fold import MessageFold
from claudegate.wire.sse import SSEParser

FIXTURE = Path(__file__).parent.parent / "fixtures" / "anthropic_text_stream.sse"
START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-sonnet-4-6",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 472, "output_tokens": 2, "cache_read_input_tokens": 100},
    },
}


def typed(fold: MessageFold) -> Message:
    assert fold.message is not None
    return Message.construct(**fold.message)


def folded(datas: list[dict[str, Any]]) -> MessageFold:
    fold = MessageFold()
    for data in datas:
        fold.feed(data)
    return fold


def fold(datas: list[dict[str, Any]]) -> Message:
    return typed(folded(datas))


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": body}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": usage,
    }


def test_anthropics_recorded_text_stream_becomes_its_message() -> None:
    parser = SSEParser()
    datas = [sse.json() for sse in parser.feed(FIXTURE.read_bytes()) if sse.event not in ("ping", None)]
    message = fold(datas)
    assert message.id == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"
    assert message.content == [TextBlock(type="text", text="Hello!", citations=None)]
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (25, 15)


def test_tool_input_is_parsed_as_it_grows_and_whole_at_the_end() -> None:
    # The tool_use stream of Anthropic's streaming documentation (shared reference, section 2).
    pieces = ["", '{"location":', ' "San', " Francisc", "o,", ' CA"', ", ", '"unit": "fah', 'renheit"}']
    datas = [
        START,
        block_start(0, {"type": "text", "text": ""}),
        delta(0, {"type": "text_delta", "text": "Okay"}),
        delta(0, {"type": "text_delta", "text": ", let me check:"}),
        stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}),
    ]
    stream = folded(datas)
    seen = []
    for piece in pieces:
        stream.feed(delta(1, {"type": "input_json_delta", "partial_json": piece}))
        block = typed(stream).content[1]
        assert isinstance(block, ToolUseBlock)
        seen.append(block.input)
    # Partial JSON is parsed as the SDK does: a key whose value has not begun, or whose string is not
    # closed yet, is left out until it is.
    assert seen[1] == seen[4] == {}
    assert seen[5] == {"location": "San Francisco, CA"}
    assert seen[-1] == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    for data in (stop(1), message_delta("tool_use", {"output_tokens": 89}), {"type": "message_stop"}):
        stream.feed(data)
    snapshot = typed(stream)
    assert snapshot.content[0] == TextBlock(type="text", text="Okay, let me check:", citations=None)
    assert snapshot.stop_reason == "tool_use"
    assert snapshot.usage.output_tokens == 89
    assert stream.completed


def test_thinking_and_its_signature_accumulate() -> None:
    message = fold(
        [
            START,
            block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
            delta(0, {"type": "thinking_delta", "thinking": "Let me "}),
            delta(0, {"type": "thinking_delta", "thinking": "think."}),
            delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}),
            stop(0),
            block_start(1, {"type": "text", "text": ""}),
            delta(1, {"type": "text_delta", "text": "42"}),
            stop(1),
        ]
    )
    assert message.content[0] == ThinkingBlock(
        type="thinking", thinking="Let me think.", signature="EqQBCgIYAhIM"
    )
    assert isinstance(message.content[1], TextBlock)
    assert message.content[1].text == "42"


def test_citations_are_appended_to_their_text_block() -> None:
    citation = {
        "type": "char_location",
        "cited_text": "The grass is green.",
        "document_index": 0,
        "document_title": "Facts",
        "start_char_index": 0,
        "end_char_index": 19,
    }
    message = fold(
        [
            START,
            block_start(0, {"type": "text", "text": ""}),
            delta(0, {"type": "citations_delta", "citation": citation}),
            delta(0, {"type": "text_delta", "text": "Green."}),
            delta(0, {"type": "citations_delta", "citation": {**citation, "start_char_index": 4}}),
        ]
    )
    block = message.content[0]
    assert isinstance(block, TextBlock)
    assert block.text == "Green."
    assert block.citations is not None
    assert [c.model_dump()["start_char_index"] for c in block.citations] == [0, 4]


def test_usage_in_message_delta_is_cumulative_and_absent_counts_keep_their_start_value() -> None:
    message = fold(
        [
            START,
            message_delta("end_turn", {"output_tokens": 10}),
            message_delta("end_turn", {"output_tokens": 30, "input_tokens": 500}),
        ]
    )
    assert message.usage.output_tokens == 30  # replaced, not added
    assert message.usage.input_tokens == 500
    assert message.usage.cache_read_input_tokens == 100  # not in the deltas: message_start's value stays


def test_message_delta_sets_a_null_stop_sequence_and_a_new_one() -> None:
    stopped = {
        "type": "message_delta",
        "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
        "usage": {"output_tokens": 3},
    }
    message = fold([START, stopped])
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")


def test_message_start_makes_a_new_snapshot_without_touching_the_event() -> None:
    start = orjson.loads(orjson.dumps(START))
    stream = MessageFold()
    stream.feed({"type": "message_start", "message": {**START["message"], "id": "msg_0"}})
    stream.feed(block_start(0, {"type": "tool_use", "id": "t", "name": "n", "input": {}}))
    stream.feed(delta(0, {"type": "input_json_delta", "partial_json": '{"a": 1'}))
    stream.feed(start)
    stream.feed(block_start(0, {"type": "text", "text": "a"}))
    stream.feed(message_delta("end_turn", {"output_tokens": 9}))
    assert start["message"]["content"] == []
    assert start["message"]["usage"]["output_tokens"] == 2
    assert typed(stream).id == "msg_1"
    assert len(typed(stream).content) == 1


def test_an_event_before_message_start_is_refused() -> None:
    with pytest.raises(RuntimeError, match="before message_start"):
        MessageFold().feed(block_start(0, {"type": "text", "text": ""}))


def test_tool_input_that_is_not_json_is_refused() -> None:
    stream = folded([START, block_start(0, {"type": "tool_use", "id": "t", "name": "n", "input": {}})])
    with pytest.raises(ValueError, match="not valid JSON"):
        stream.feed(delta(0, {"type": "input_json_delta", "partial_json": '{"a": ]'}))


def test_pings_and_unknown_events_change_nothing_and_an_error_means_not_completed() -> None:
    stream = folded([START, {"type": "ping"}, {"type": "a_newer_event", "index": 0}])
    assert stream.content == []
    stream.feed({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    stream.feed({"type": "message_stop"})
    assert not stream.completed
    assert stream.error == ("overloaded_error", "Overloaded")
