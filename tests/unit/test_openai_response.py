"""Claude's replies, streams and errors as OpenAI clients receive them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from claudegate.openai import (
    DONE,
    ChunkTranslator,
    completion_from_message,
    finish_reason,
    openai_usage,
    translate_error,
    translate_error_body,
)

USAGE = {
    "input_tokens": 10,
    "cache_creation_input_tokens": 5,
    "cache_read_input_tokens": 100,
    "output_tokens": 7,
}


def test_usage_counts_every_prompt_token_and_names_the_cached_ones() -> None:
    assert openai_usage(USAGE) == {
        "prompt_tokens": 115,
        "completion_tokens": 7,
        "total_tokens": 122,
        "prompt_tokens_details": {"cached_tokens": 100},
    }


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        (None, "stop"),
    ],
)
def test_finish_reason(stop_reason: str | None, expected: str) -> None:
    assert finish_reason(stop_reason) == expected


def test_a_message_with_thinking_text_and_tool_calls() -> None:
    message = {
        "id": "msg_01abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [
            {"type": "thinking", "thinking": "Let me see.", "signature": "sig"},
            {"type": "text", "text": "I'll check."},
            {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_2", "name": "w", "input": {"city": "Rome"}},
        ],
        "stop_reason": "tool_use",
        "usage": USAGE,
    }
    completion = completion_from_message(message, created=1_700_000_000)
    assert completion["id"] == "chatcmpl-01abc"
    assert (completion["object"], completion["created"], completion["model"]) == (
        "chat.completion",
        1_700_000_000,
        "claude-sonnet-4-6",
    )
    [choice] = completion["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": "I'll check.",
        "refusal": None,
        "reasoning_content": "Let me see.",
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Oslo"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "w", "arguments": '{"city":"Rome"}'}},
        ],
    }
    assert completion["usage"]["prompt_tokens_details"] == {"cached_tokens": 100}


def test_a_message_of_tool_calls_only_has_null_content() -> None:
    message = {
        "content": [{"type": "tool_use", "id": "t", "name": "w", "input": {}}],
        "stop_reason": "tool_use",
    }
    assert completion_from_message(message, created=0)["choices"][0]["message"]["content"] is None


def sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n" for event in events
    )


STREAM = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_01xyz",
            "model": "claude-sonnet-4-6",
            "content": [],
            "usage": {"input_tokens": 20, "cache_read_input_tokens": 30, "output_tokens": 1},
        },
    },
    {"type": "ping"},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hel"}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "lo"}},
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "toolu_9", "name": "w", "input": {}},
    },
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": '{"c":'},
    },
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": '"O"}'},
    },
    {"type": "content_block_stop", "index": 2},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}},
    {"type": "message_stop"},
]


def translate_stream(raw: bytes, *, include_usage: bool, piece: int = 7) -> list[Any]:
    """Feed the stream in small pieces (events split anywhere); the OpenAI events that come out."""
    translator = ChunkTranslator(include_usage=include_usage, created=5)
    out = b""
    for start in range(0, len(raw), piece):
        out += translator.feed_bytes(raw[start : start + piece])
    assert translator.done
    assert out.endswith(b"\n\n")
    events = [block.removeprefix(b"data: ") for block in out.split(b"\n\n") if block]
    return [event.decode() if event == b"[DONE]" else orjson.loads(event) for event in events]


def test_a_stream_becomes_chunks_then_done() -> None:
    events = translate_stream(sse(STREAM), include_usage=False)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(
        chunk["id"] == "chatcmpl-01xyz" and chunk["object"] == "chat.completion.chunk" for chunk in chunks
    )
    assert all(chunk["created"] == 5 and chunk["model"] == "claude-sonnet-4-6" for chunk in chunks)
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Hmm."},
        {"content": "Hel"},
        {"content": "lo"},
        {
            "tool_calls": [
                {"index": 0, "id": "toolu_9", "type": "function", "function": {"name": "w", "arguments": ""}}
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"c":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"O"}'}}]},
        {},
    ]
    finishes = [chunk["choices"][0]["finish_reason"] for chunk in chunks]
    assert finishes == [None] * 7 + ["tool_calls"]


@pytest.mark.parametrize("piece", [1, 7, 100_000])
def test_any_chunking_and_either_line_ending_give_the_same_chunks(piece: int) -> None:
    expected = translate_stream(sse(STREAM), include_usage=True, piece=1000)
    assert translate_stream(sse(STREAM), include_usage=True, piece=piece) == expected
    crlf = sse(STREAM).replace(b"\n", b"\r\n")
    assert translate_stream(crlf, include_usage=True, piece=piece) == expected


def test_text_with_quotes_and_escapes_is_carried_exactly() -> None:
    texts = ['He said "hi"', "back\\slash\\", "tab\tnew\nline", '}}"}}', "emoji 🎉", ""]
    events = [STREAM[0], STREAM[6]]
    events += [
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": t}} for t in texts
    ]
    events += STREAM[-2:]
    chunks = translate_stream(sse(events), include_usage=False)
    assert [chunk["choices"][0]["delta"].get("content") for chunk in chunks[1:-2]] == texts


def test_include_usage_adds_a_last_chunk_with_the_whole_calls_usage() -> None:
    events = translate_stream(sse(STREAM), include_usage=True, piece=1000)
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {
        "prompt_tokens": 50,
        "completion_tokens": 12,
        "total_tokens": 62,
        "prompt_tokens_details": {"cached_tokens": 30},
    }


def test_an_error_event_ends_the_stream_with_openais_error() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    events = translate_stream(sse([STREAM[0], error]), include_usage=True)
    assert events[-1] == {
        "error": {"message": "Overloaded", "type": "server_error", "param": None, "code": "overloaded"}
    }
    assert "[DONE]" not in events


def test_parallel_tool_calls_count_from_zero() -> None:
    starts = [
        {
            "type": "content_block_start",
            "index": i,
            "content_block": {"type": "tool_use", "id": f"t{i}", "name": "w"},
        }
        for i in (1, 2)
    ]
    translator = ChunkTranslator(include_usage=False, created=0)
    translator.feed("message_start", orjson.dumps(STREAM[0]))
    indexes = [
        orjson.loads(translator.feed("content_block_start", orjson.dumps(start))[6:])["choices"][0]["delta"][
            "tool_calls"
        ][0]["index"]
        for start in starts
    ]
    assert indexes == [0, 1]
    assert translator.feed("message_stop", b'{"type":"message_stop"}') == DONE


@pytest.mark.parametrize(
    ("status", "anthropic_type", "message", "expected_status", "openai_type", "code"),
    [
        (400, "invalid_request_error", "max_tokens: too big", 400, "invalid_request_error", None),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 5 > 1",
            400,
            "invalid_request_error",
            "context_length_exceeded",
        ),
        (401, "authentication_error", "bad key", 401, "invalid_request_error", "invalid_api_key"),
        (402, "billing_error", "budget", 429, "insufficient_quota", "insufficient_quota"),
        (403, "permission_error", "no", 403, "invalid_request_error", "permission_denied"),
        (404, "not_found_error", "model: x", 404, "invalid_request_error", "model_not_found"),
        (405, "invalid_request_error", "use POST", 405, "invalid_request_error", "method_not_allowed"),
        (413, "request_too_large", "big", 413, "invalid_request_error", "request_too_large"),
        (429, "rate_limit_error", "slow down", 429, "requests", "rate_limit_exceeded"),
        (500, "api_error", "oops", 500, "server_error", None),
        (502, "api_error", "unreachable", 502, "server_error", None),
        (504, "timeout_error", "late", 504, "server_error", "timeout"),
        (529, "overloaded_error", "busy", 503, "server_error", "overloaded"),
        (418, None, "odd", 418, "invalid_request_error", None),
    ],
)
def test_errors_map_to_the_status_and_code_openai_clients_handle(
    status: int,
    anthropic_type: str | None,
    message: str,
    expected_status: int,
    openai_type: str,
    code: str | None,
) -> None:
    translated = translate_error(status, anthropic_type, message)
    assert translated.status == expected_status
    assert orjson.loads(translated.body) == {
        "error": {"message": message, "type": openai_type, "param": None, "code": code}
    }
    assert translated.no_retry == (anthropic_type == "billing_error")


def test_an_upstream_error_body_is_read_for_its_type_and_message() -> None:
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"r"}'
    translated = translate_error_body(529, body)
    assert translated.status == 503
    assert orjson.loads(translated.body)["error"]["message"] == "Overloaded"
    unreadable = translate_error_body(502, b"<html>bad gateway</html>")
    assert unreadable.status == 502
    assert orjson.loads(unreadable.body)["error"]["type"] == "server_error"


def test_text_deltas_of_other_shapes_are_parsed_not_copied() -> None:
    odd = [
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "a", "x": "b"}},
        {"index": 1, "type": "content_block_delta", "delta": {"type": "text_delta", "text": "z"}},
        {"type": "content_block_delta", "index": 12, "delta": {"type": "text_delta", "text": "q"}},
    ]
    chunks = translate_stream(sse([STREAM[0], STREAM[6], *odd, *STREAM[-2:]]), include_usage=False)
    assert [chunk["choices"][0]["delta"] for chunk in chunks[1:-2]] == [
        {"content": "a"},
        {"content": "z"},
        {"content": "q"},
    ]
