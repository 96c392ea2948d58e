"""The simulator's SSE streams byte for byte: event order and shapes against the official docs' example,
cumulative usage, thinking and tool streams, and the latency model."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from claudegate.simulator.settings import LatencyModel
from claudegate.wire.sse import ServerSentEvent, SSEParser
from claudegate.wire.tokens import count_text_tokens
from tests.integration.simulator_support import HELLO, MODEL, simulator, sync_client

FIXTURE = Path(__file__).parent.parent / "fixtures" / "anthropic_text_stream.sse"
HEADERS = {"x-api-key": "test-key", "anthropic-version": "2023-06-01", "content-type": "application/json"}
# Usage fields the SDK knows: the docs' example shows only two of them, the API now sends more.
USAGE_FIELDS = set(anthropic.types.Usage.model_fields) | set(anthropic.types.MessageDeltaUsage.model_fields)
CACHE_CREATION_FIELDS = set(anthropic.types.CacheCreation.model_fields)


def parse(chunks: Iterator[bytes] | list[bytes]) -> list[ServerSentEvent]:
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    assert parser.pending == b"", "the stream ended in the middle of an event"
    return events


def raw_stream(
    url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[httpx2.Response, list[bytes]]:
    """POST a streaming request and keep the bytes exactly as they came off the socket."""
    with (
        httpx2.Client(timeout=10) as http,
        http.stream(
            "POST",
            f"{url}/v1/messages",
            content=orjson.dumps({**body, "stream": True}),
            headers=headers or HEADERS,
        ) as response,
    ):
        return response, list(response.iter_raw())


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every key of every nested object, as dotted paths (lists are leaves)."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, child in value.items():
            path = f"{prefix}{key}"
            paths.add(path)
            paths |= key_paths(child, path + ".")
    return paths


def signature(event: ServerSentEvent) -> tuple[Any, ...]:
    """What the comparison looks at: event name, data type, keys (usage apart), delta type and index."""
    data = event.json()
    keys = key_paths(data)
    plain = frozenset(k for k in keys if ".usage." not in f".{k}")
    delta = data.get("delta", {})
    return (event.event, data["type"], plain, delta.get("type"), data.get("index"))


def collapse_deltas(signatures: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Runs of identical content_block_delta signatures count once (a reply may have any number of deltas)."""
    collapsed: list[tuple[Any, ...]] = []
    for sig in signatures:
        if sig[0] == "content_block_delta" and collapsed and collapsed[-1] == sig:
            continue
        collapsed.append(sig)
    return collapsed


def usage_keys(data: dict[str, Any]) -> set[str]:
    usage = data.get("usage") or data.get("message", {}).get("usage") or {}
    return set(usage)


def literal_example() -> list[ServerSentEvent]:
    raw = FIXTURE.read_bytes()
    # The docs' listing stops after the last data line; a stream ends each event with a blank line.
    return parse([raw if raw.endswith(b"\n\n") else raw + b"\n"])


def test_fixture_is_the_docs_example() -> None:
    events = literal_example()
    assert [e.event for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_text_stream_has_the_structure_of_the_docs_example(simulator_url: str) -> None:
    response, chunks = raw_stream(simulator_url, {"model": MODEL, "max_tokens": 500, "messages": HELLO})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["request-id"].startswith("req_")
    events = parse(chunks)
    example = literal_example()

    ours = [signature(e) for e in events]
    theirs = [signature(e) for e in example]
    assert sum(1 for s in ours if s[0] == "content_block_delta") > 2  # more deltas than the example: allowed
    assert collapse_deltas(ours) == collapse_deltas(theirs)

    for mine, docs in zip(
        [e for e in events if e.event in ("message_start", "message_delta")],
        [e for e in example if e.event in ("message_start", "message_delta")],
        strict=True,
    ):
        mine_usage, docs_usage = usage_keys(mine.json()), usage_keys(docs.json())
        assert docs_usage <= mine_usage <= USAGE_FIELDS, (mine.event, mine_usage)
    start_usage = events[0].json()["message"]["usage"]
    assert set(start_usage["cache_creation"]) <= CACHE_CREATION_FIELDS


def test_every_event_names_its_type_and_usage_is_cumulative(simulator_url: str) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 800,
        "messages": [{"role": "user", "content": "A longer answer, please."}],
    }
    _, chunks = raw_stream(simulator_url, body)
    events = parse(chunks)

    for event in events:
        assert event.json()["type"] == event.event
        assert event.raw.startswith(b"event: ")
        assert event.raw.endswith(b"\n\n")
    assert b"".join(e.raw for e in events) == b"".join(chunks)  # nothing between or after the events

    text = "".join(e.json()["delta"]["text"] for e in events if e.event == "content_block_delta")
    (delta,) = [e.json() for e in events if e.event == "message_delta"]
    start = events[0].json()["message"]
    with sync_client(simulator_url) as client:
        final = client.messages.create(**body)

    assert delta["usage"]["output_tokens"] == final.usage.output_tokens == count_text_tokens(text)
    assert start["usage"]["output_tokens"] <= delta["usage"]["output_tokens"]
    assert start["usage"]["input_tokens"] == delta["usage"]["input_tokens"] == final.usage.input_tokens
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert start["stop_reason"] is None
    assert start["content"] == []
    assert text == final.content[0].text


def test_text_deltas_carry_a_few_tokens_each(simulator_url: str) -> None:
    _, chunks = raw_stream(simulator_url, {"model": MODEL, "max_tokens": 800, "messages": HELLO})
    texts = [e.json()["delta"]["text"] for e in parse(chunks) if e.event == "content_block_delta"]
    assert all(1 <= count_text_tokens(t) <= 3 for t in texts)


def test_tool_use_stream_opens_with_empty_input_and_an_empty_json_delta(simulator_url: str) -> None:
    tool = {
        "name": "get_weather",
        "input_schema": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    }
    body = {
        "model": MODEL,
        "max_tokens": 500,
        "tools": [tool],
        "tool_choice": {"type": "any"},
        "messages": HELLO,
    }
    events = [e.json() for e in parse(raw_stream(simulator_url, body)[1])]

    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["tool_use"]
    block = starts[0]["content_block"]
    assert block["input"] == {}
    assert block["name"] == "get_weather"
    assert block["id"].startswith("toolu_")
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert deltas[0] == {"type": "input_json_delta", "partial_json": ""}
    assert {d["type"] for d in deltas} == {"input_json_delta"}
    assert orjson.loads("".join(d["partial_json"] for d in deltas))["location"]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


def test_thinking_stream_ends_its_block_with_a_signature_and_text_follows_at_index_1(
    simulator_url: str,
) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 3000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": HELLO,
    }
    events = [e.json() for e in parse(raw_stream(simulator_url, body)[1])]

    starts = [(e["index"], e["content_block"]) for e in events if e["type"] == "content_block_start"]
    # The block opens with an empty signature, as the SDK's ThinkingBlock requires one; it comes last.
    thinking_start = {"type": "thinking", "thinking": "", "signature": ""}
    assert starts == [(0, thinking_start), (1, {"type": "text", "text": ""})]
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta" and e["index"] == 0]
    assert {delta["type"] for delta in deltas[:-1]} == {"thinking_delta"}
    assert deltas[-1]["type"] == "signature_delta"
    assert base64.b64decode(deltas[-1]["signature"], validate=True)
    order = [(e["type"], e.get("index")) for e in events]
    assert order.index(("content_block_stop", 0)) == order.index(("content_block_start", 1)) - 1


def test_stream_answers_errors_before_it_starts_as_plain_json(simulator_url: str) -> None:
    response, chunks = raw_stream(simulator_url, {"model": "claude-nope", "max_tokens": 5, "messages": HELLO})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert orjson.loads(b"".join(chunks))["error"]["type"] == "not_found_error"


# -- latency ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paced_url() -> Iterator[str]:
    # 50 ms to the first token, then 400 tokens/s: small enough for a quick test, large enough to measure.
    with simulator(latency=LatencyModel(ttft_s=0.05, tokens_per_second=400.0)) as url:
        yield url


def test_stream_is_paced_by_time_to_first_token_and_token_rate(paced_url: str) -> None:
    tokens = 60  # 0.15 s of generation at 400 tokens/s
    headers = {**HEADERS, "x-simulator-reply-tokens": str(tokens)}
    started = time.perf_counter()
    arrivals: list[tuple[float, str]] = []
    with httpx2.Client(timeout=10) as http, http.stream(
        "POST", f"{paced_url}/v1/messages", headers=headers,
        content=orjson.dumps({"model": MODEL, "max_tokens": 500, "messages": HELLO, "stream": True}),
    ) as response:  # fmt: skip
        parser = SSEParser()
        for chunk in response.iter_raw():
            arrivals.extend((time.perf_counter() - started, e.event or "") for e in parser.feed(chunk))

    first_delta = next(t for t, name in arrivals if name == "content_block_delta")
    total = arrivals[-1][0]
    assert first_delta >= 0.05
    assert total >= 0.05 + 0.9 * tokens / 400
    assert total < 2.0
    delta_times = [t for t, name in arrivals if name == "content_block_delta"]
    assert delta_times[-1] - delta_times[0] >= 0.8 * (tokens - 3) / 400  # spread out, not sent at once


def test_non_streamed_reply_waits_for_the_whole_generation(paced_url: str) -> None:
    with sync_client(paced_url) as client:
        started = time.perf_counter()
        message = client.messages.create(
            model=MODEL,
            max_tokens=500,
            messages=HELLO,
            extra_headers={"x-simulator-reply-tokens": "40"},
        )
        elapsed = time.perf_counter() - started
    assert message.usage.output_tokens == 40
    assert elapsed >= 0.05 + 0.9 * 40 / 400


STRING = {"type": "string"}


def test_paced_and_instant_streams_carry_the_same_events(simulator_url: str, paced_url: str) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 3000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [{"name": "lookup", "input_schema": {"type": "object", "properties": {"q": STRING}}}],
        "messages": [{"role": "user", "content": "Please use lookup for this."}],
    }
    headers = {**HEADERS, "x-simulator-reply-tokens": "30"}

    def events(url: str) -> list[Any]:
        parsed = [e.json() for e in parse(raw_stream(url, body, headers)[1])]
        del parsed[0]["message"]["id"]
        return parsed

    assert events(simulator_url) == events(paced_url)
