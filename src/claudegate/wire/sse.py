"""Server-sent events: encoding, and an incremental parser that keeps each event's raw bytes.

The parser is written by hand rather than taken from a library because the gateway must pass every byte
through unchanged while it reads usage from a few events: it needs the exact bytes of each event, boundaries
that may fall anywhere in a network chunk, and no per-event allocation beyond a slice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["SSEParser", "ServerSentEvent", "encode_event"]


def encode_event(event: str, data: dict[str, Any]) -> bytes:
    """One event as Anthropic sends it: ``event: NAME``, one ``data:`` line of compact JSON, a blank line."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


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
        start = 0
        while True:
            end, separator_length = _find_event_end(buffer, start)
            if end < 0:
                break
            raw = buffer[start : end + separator_length]
            yield _parse_event(buffer[start:end], raw)
            start = end + separator_length
        self._buffer = buffer[start:]

    @property
    def pending(self) -> bytes:
        """Bytes received after the last complete event."""
        return self._buffer


def _find_event_end(buffer: bytes, start: int) -> tuple[int, int]:
    """Position of the blank line that ends the next event, and the separator's length."""
    lf = buffer.find(b"\n\n", start)
    crlf = buffer.find(b"\r\n\r\n", start)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    return lf, 2


def _parse_event(block: bytes, raw: bytes) -> ServerSentEvent:
    event: str | None = None
    data_lines: list[bytes] = []
    for line in block.splitlines():
        if line.startswith(b"data:"):
            data_lines.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode()
    return ServerSentEvent(event=event, data=b"\n".join(data_lines), raw=raw)
