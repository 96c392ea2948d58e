"""Where a reply goes: the HTTP client of the gateway, or an in-process caller."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from starlette.types import Receive, Send

__all__ = ["AsgiSink", "DisconnectWatch", "RawHeaders", "ResponseSink"]

RawHeaders = list[tuple[bytes, bytes]]


class ResponseSink(Protocol):
    """Receives one reply: a start (status and headers), then body chunks."""

    @property
    def gone(self) -> asyncio.Event:
        """Set when the caller has left; whoever waits on the upstream then stops at once."""
        ...

    def on_gone(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` as soon as the caller leaves (at once if it already has)."""
        ...

    async def start(self, status: int, headers: RawHeaders) -> None: ...

    async def send(self, chunk: bytes, *, more: bool) -> None: ...


class DisconnectWatch:
    """The ``gone`` half of a ResponseSink for an HTTP client: a task that notices its disconnect."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._gone = asyncio.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._watcher: asyncio.Task[None] | None = None

    @property
    def gone(self) -> asyncio.Event:
        return self._gone

    def watch(self) -> None:
        """Start listening for the client's disconnect (once its request body has been read)."""
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._gone.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_gone(self, callback: Callable[[], None]) -> None:
        if self._gone.is_set():
            callback()
        else:
            self._callbacks.append(callback)


class AsgiSink(DisconnectWatch):
    """The reply of an HTTP call, relayed as it comes, with a watcher that notices a disconnect."""

    def __init__(self, receive: Receive, send: Send, extra_headers: RawHeaders) -> None:
        super().__init__(receive)
        self._send = send
        self._extra = extra_headers

    async def start(self, status: int, headers: RawHeaders) -> None:
        headers.extend(self._extra)
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def send(self, chunk: bytes, *, more: bool) -> None:
        await self._send({"type": "http.response.body", "body": chunk, "more_body": more})
