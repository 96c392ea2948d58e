"""A stream the gateway breaks off ends with ``error_tail``: wherever the relayed bytes stopped, even inside
an event, the official SDK's own SSE decoder reads the whole events before the cut unchanged, at most one
``ping`` (which the SDK skips), then the error event."""

from __future__ import annotations

from pathlib import Path

import orjson
from anthropic._streaming import SSEDecoder

from claudegate.wire.sse import error_tail

STREAM = (Path(__file__).parent.parent / "fixtures" / "anthropic_text_stream.sse").read_bytes()
ERROR = {"type": "api_error", "message": "the upstream closed the connection"}


def decoded(data: bytes) -> list[tuple[str | None, str]]:
    return [(event.event, event.data) for event in SSEDecoder().iter_bytes(iter([data]))]


def test_an_error_tail_after_a_cut_anywhere_reads_as_the_events_before_then_the_error() -> None:
    for cut in range(len(STREAM) + 1):
        sent = STREAM[:cut]
        complete = decoded(sent)  # the whole events the client had when the stream broke off
        events = decoded(sent + error_tail(ERROR["type"], ERROR["message"], after=sent[-4:]))
        assert events[: len(complete)] == complete, cut
        between = events[len(complete) : -1]
        assert [name for name, _ in between] in ([], ["ping"]), (cut, between)
        name, data = events[-1]
        assert name == "error", cut
        assert orjson.loads(data) == {"type": "error", "error": ERROR}


def test_after_a_whole_event_the_error_event_comes_alone() -> None:
    assert error_tail("api_error", "cut", after=b"}\n\n").startswith(b"event: error\n")
    assert error_tail("api_error", "cut").startswith(b"event: error\n")
