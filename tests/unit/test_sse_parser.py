"""The incremental SSE parser: any chunking gives the same events, with their exact bytes."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from claudegate.wire.sse import ServerSentEvent, SSEParser, encode_event

EVENTS = [
    ("message_start", {"type": "message_start", "message": {"id": "msg_1", "content": []}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"text": "Hé\n\nllo 🙂"}}),
    ("message_stop", {"type": "message_stop"}),
]
STREAM = b"".join(encode_event(name, data) for name, data in EVENTS)


def feed_in(parser: SSEParser, data: bytes, cuts: list[int]) -> list[ServerSentEvent]:
    events: list[ServerSentEvent] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        events.extend(parser.feed(data[start:cut]))
        start = cut
    return events


def test_encode_event_writes_one_compact_data_line() -> None:
    raw = encode_event("ping", {"type": "ping"})
    assert raw == b'event: ping\ndata: {"type":"ping"}\n\n'


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_any_chunking_gives_the_same_events_and_bytes(cuts: list[int]) -> None:
    parser = SSEParser()
    events = feed_in(parser, STREAM, cuts)
    assert [(e.event, e.json()) for e in events] == EVENTS
    assert b"".join(e.raw for e in events) == STREAM
    assert parser.pending == b""


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=20), st.booleans())
def test_crlf_multiline_data_and_comments(cuts: list[int], crlf: bool) -> None:
    text = ": a comment\nevent: thing\ndata: line one\ndata:line two\nid: 7\n\nevent: other\ndata: {}\n\n"
    raw = text.replace("\n", "\r\n").encode() if crlf else text.encode()
    parser = SSEParser()
    events = feed_in(parser, raw, [c for c in cuts if c <= len(raw)])
    assert [(e.event, e.data) for e in events] == [("thing", b"line one\nline two"), ("other", b"{}")]
    assert b"".join(e.raw for e in events) == raw


def test_an_unfinished_event_waits_in_pending() -> None:
    parser = SSEParser()
    assert list(parser.feed(b"event: ping\ndata: {}\n")) == []
    assert parser.pending == b"event: ping\ndata: {}\n"
    (event,) = parser.feed(b"\n")
    assert event.event == "ping"
    assert event.json() == {}


def test_data_without_an_event_name() -> None:
    (event,) = SSEParser().feed(b'data: {"x": 1}\n\n')
    assert event.event is None
    data: Any = event.json()
    assert data == {"x": 1}


_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
_LINE = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=20)


@st.composite
def event_streams(draw: st.DrawFn) -> tuple[bytes, list[tuple[str | None, bytes]]]:
    """Events in any mix of LF and CRLF framing, with up to three data lines, and what they parse to."""
    raw = b""
    expected: list[tuple[str | None, bytes]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        newline = draw(st.sampled_from(["\n", "\r\n"]))
        name = draw(st.one_of(st.none(), _NAME))
        data = draw(st.lists(_LINE, max_size=3))
        lines = ([f"event: {name}"] if name else []) + [f"data: {line}" for line in data]
        if not lines:
            lines = [": keep-alive"]
        raw += (newline.join(lines) + newline + newline).encode()
        expected.append((name, "\n".join(data).encode()))
    return raw, expected


@given(event_streams(), st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_mixed_framing_in_any_chunking(
    stream: tuple[bytes, list[tuple[str | None, bytes]]], cuts: list[int]
) -> None:
    raw, expected = stream
    cuts = [c for c in cuts if c <= len(raw)]
    parser = SSEParser()
    events = feed_in(parser, raw, cuts)
    assert [(e.event, e.data) for e in events] == expected
    assert b"".join(e.raw for e in events) == raw
    assert parser.pending == b""

    fields_parser = SSEParser()
    fields: list[tuple[str | None, bytes]] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(raw)]:
        fields.extend(fields_parser.feed_fields(raw[start:cut]))
        start = cut
    assert fields == expected
