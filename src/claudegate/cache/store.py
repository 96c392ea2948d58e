"""Where cached replies live: in this process, a least-recently-used map bounded in bytes, each entry with a
time to live."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from claudegate.pipeline.sink import RawHeaders

__all__ = ["CachedReply", "MemoryReplyCache"]

_ENTRY_OVERHEAD = 256  # bytes counted per entry beyond its body and headers (key, object, bookkeeping)


@dataclass(frozen=True, slots=True)
class CachedReply:
    """A complete successful reply as the client received it: replayed, it is the same bytes."""

    status: int
    headers: RawHeaders
    body: bytes
    model: str | None
    streamed: bool
    size: int = field(default=0, compare=False)

    @classmethod
    def of(
        cls, status: int, headers: RawHeaders, body: bytes, model: str | None, streamed: bool
    ) -> CachedReply:
        size = len(body) + sum(len(name) + len(value) for name, value in headers) + _ENTRY_OVERHEAD
        return cls(status, headers, body, model, streamed, size)


class MemoryReplyCache:
    """A bounded map of replies. ``clock`` is injectable so tests move time instead of waiting for it."""

    def __init__(self, *, max_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_bytes = max_bytes
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, CachedReply]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> CachedReply | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, reply = found
        if self._clock() >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return reply

    async def put(self, key: str, reply: CachedReply) -> None:
        if reply.size > self._max_bytes:
            return  # a reply bigger than the whole cache would only evict everything else
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self._clock() + self._ttl_s, reply)
        self.bytes += reply.size
        while self.bytes > self._max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    async def close(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def _drop(self, key: str) -> None:
        _, reply = self._entries.pop(key)
        self.bytes -= reply.size
