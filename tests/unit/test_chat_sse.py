"""Reading Anthropic's stream back into the reply (wire.message_fold, as the chat API's stream sink feeds
it), and the chat API's own events."""

# ruff: noqa: E501 - the stream below is recorded verbatim (Anthropic's documentation)

from __future__ import annotations

import orjson

from claudegate.chat.sse import done_event, error_event, token_event
from claudegate.wire.message_fold import MessageFold
from claudegate.wire.sse import SSEParser

TEXT_STREAM = b"""event: message_start
data: {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-opus-4-1-20250805", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \\"Paris\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence":null}, "usage": {"output_tokens": 15}}

event: message_stop
data: {"type": "message_stop"}

"""


def fold(stream: bytes, chunk: int = 7) -> tuple[MessageFold, list[str]]:
    parser, builder, texts = SSEParser(), MessageFold(), []
    for start in range(0, len(stream), chunk):
        for _name, data in parser.feed_fields(stream[start : start + chunk]):
            text = builder.feed(orjson.loads(data))
            if text:
                texts.append(text)
    return builder, texts


def test_a_stream_folds_into_its_message_whatever_the_chunking() -> None:
    for chunk in (1, 7, 4096):
        builder, texts = fold(TEXT_STREAM, chunk)
        assert texts == ["Hello", "!"]
        assert builder.content == [
            {"type": "text", "text": "Hello!"},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "Paris"}},
        ]
        assert (builder.stop_reason, builder.model, builder.completed, builder.error) == (
            "tool_use",
            "claude-opus-4-1-20250805",
            True,
            None,
        )


def test_an_error_event_means_not_completed() -> None:
    stream = TEXT_STREAM.split(b"event: content_block_stop")[0] + (
        b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
    )
    builder, texts = fold(stream)
    assert texts == ["Hello", "!"]
    assert not builder.completed
    assert builder.error == ("overloaded_error", "Overloaded")


def test_a_stream_cut_short_is_not_completed() -> None:
    builder, _ = fold(TEXT_STREAM[: len(TEXT_STREAM) // 2])
    assert not builder.completed
    assert builder.error is None


def test_chat_events() -> None:
    assert token_event("Hi") == b'data: {"token":"Hi","done":false}\n\n'
    done = orjson.loads(
        done_event(chat_id="c", message_id="m", full_text="Hi", usage={"total_tokens": 3})[6:]
    )
    assert done == {
        "token": "",
        "done": True,
        "chat_id": "c",
        "message_id": "m",
        "fullText": "Hi",
        "usage": {"total_tokens": 3},
    }
    error = orjson.loads(error_event(chat_id="c", error_type="api_error", message="boom")[6:])
    assert error["done"] is True
    assert error["error"] == {"type": "api_error", "message": "boom"}
