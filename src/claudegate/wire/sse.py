"""Server-sent events: encoding, and an incremental parser that keeps each event's raw bytes.

The parser is written by hand rather than taken from a library because the gateway must pass every byte
through unchanged while it reads usage from a few events: it needs the exact bytes of each event, boundaries
that may fall anywhere in a network chunk, and no per-event allocation beyond a slice.

It runs on every event of every stream the gateway relays, so it is written for that: each byte of a buffer
is searched a bounded number of times, and events in Anthropic's own shape (``event: NAME`` then one
``data:`` line) are read with a few searches instead of a line split (anything else takes the general path).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["SSEParser", "ServerSentEvent", "encode_event", "error_tail"]


def encode_event(event: str, data: dict[str, Any]) -> bytes:
    """One event as Anthropic sends it: ``event: NAME``, one ``data:`` line of compact JSON, a blank line."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def error_tail(error_type: str, message: str, *, after: bytes = b"") -> bytes:
    """What ends a stream the gateway must break off: an ``error`` event in Anthropic's shape, after the bytes
    already relayed (``after``: their last few bytes), which may stop anywhere in an event.

    After a whole event, the error event alone. Inside one, the partial event is first ended as an event
    clients skip: a line break ends a partial line, ``event: ping`` renames the event (the last ``event``
    field wins; its data, perhaps cut mid-JSON, goes with it), and a blank line ends it.
    """
    if not after or after.endswith((b"\n\n", b"\r\r", b"\r\n\r\n")):
        prefix = b""
    elif after.endswith((b"\n", b"\r")):
        prefix = b"event: ping\n\n"
    else:
        prefix = b"\nevent: ping\n\n"
    return prefix + encode_event(
        "error", {"type": "error", "error": {"type": error_type, "message": message}}
    )


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str | None
    data: bytes
    raw: bytes

    def json(self) -> Any:
        return orjson.loads(self.data)


class SSEParser:
    """Feed bytes in any chunking; complete events come out in order with their raw bytes."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> Iterator[ServerSentEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" not in buffer:  # every event ends with "\n\n": one split finds them all
            blocks = buffer.split(b"\n\n")
            rest = blocks.pop()
            for block in blocks:
                event, data = _fields(block)
                yield ServerSentEvent(event=event, data=data, raw=block + b"\n\n")
            self._buffer = rest
            return
        start = 0
        for end, following in _event_ends(buffer):
            event, data = _fields(buffer[start:end])
            yield ServerSentEvent(event=event, data=data, raw=buffer[start:following])
            start = following
        self._buffer = buffer[start:]

    def feed_fields(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        """Like :meth:`feed`, but only each complete event's name and data, without its raw bytes or an event
        object: what a reader that passes the bytes on unchanged (the usage tap) needs, at less cost."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" not in buffer:
            blocks = buffer.split(b"\n\n")
            self._buffer = blocks.pop()
            return [_fields(block) for block in blocks]
        fields = []
        start = 0
        for end, following in _event_ends(buffer):
            fields.append(_fields(buffer[start:end]))
            start = following
        self._buffer = buffer[start:]
        return fields

    @property
    def pending(self) -> bytes:
        """Bytes received after the last complete event."""
        return self._buffer


def _event_ends(buffer: bytes) -> list[tuple[int, int]]:
    """For each complete event in ``buffer``: where the blank line that ends it begins, and where the next
    event starts. The separator is ``\\n\\n`` or ``\\r\\n\\r\\n``, whichever comes first; each byte is
    searched at most twice, however the events are separated."""
    ends: list[tuple[int, int]] = []
    start = 0
    lf_left = crlf_left = True  # once a search from some point finds nothing, later ones cannot either
    while True:
        lf = buffer.find(b"\n\n", start) if lf_left else -1
        if lf < 0:
            lf_left = False
            crlf = buffer.find(b"\r\n\r\n", start) if crlf_left else -1
            if crlf < 0:
                return ends
            ends.append((crlf, crlf + 4))
            start = crlf + 4
            continue
        # A CRLF separator counts only if it starts before the LF one: search no further than that.
        crlf = buffer.find(b"\r\n\r\n", start, lf + 3) if crlf_left else -1
        if crlf >= 0:
            ends.append((crlf, crlf + 4))
            start = crlf + 4
        else:
            ends.append((lf, lf + 2))
            start = lf + 2


def _fields(block: bytes) -> tuple[str | None, bytes]:
    """The name and data of one event (without its blank line)."""
    # Anthropic's shape, "event: NAME\ndata: DATA", read without splitting lines. It parses exactly as the
    # general path below would: two lines, no CR, the name line first.
    if block.startswith(b"event: "):
        newline = block.find(b"\n")
        if (
            newline >= 0
            and block.startswith(b"data: ", newline + 1)
            and block.find(b"\n", newline + 1) < 0
            and b"\r" not in block
        ):
            return block[7:newline].strip().decode(), block[newline + 7 :]
    return _parse_lines(block)


def _parse_lines(block: bytes) -> tuple[str | None, bytes]:
    event: str | None = None
    data_lines: list[bytes] = []
    for line in block.splitlines():
        if line.startswith(b"data:"):
            data_lines.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode()
    return event, b"\n".join(data_lines)
