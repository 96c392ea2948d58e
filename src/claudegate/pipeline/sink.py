"""Where a reply goes: the HTTP client of the gateway, or an in-process caller."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from starlette.types import Receive, Send

__all__ = ["WATCH_AFTER_S", "AsgiSink", "Departure", "DisconnectWatch", "RawHeaders", "ResponseSink"]

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

    @property
    def shut_down(self) -> bool:
        """True when it is not the caller that left but the gateway that stopped the call (shutdown): the
        caller is still there and is owed an answer."""
        ...

    async def start(self, status: int, headers: RawHeaders) -> None: ...

    async def send(self, chunk: bytes, *, more: bool) -> None: ...


# How long a call runs before a task starts listening for its client's disconnect. A call that ends sooner
# (a fast upstream) never creates that task, which otherwise is created, scheduled and cancelled on every call
# (turns of the event loop and CPU, for the rare client that leaves). A client that leaves is noticed at most
# this much later than it would be otherwise, long before anything it left costs much.
WATCH_AFTER_S = 0.02


class Departure:
    """The ``gone`` half of a ResponseSink: an event, and callbacks run once when the caller leaves."""

    __slots__ = ("_callbacks", "_gone", "_shut_down")

    def __init__(self) -> None:
        self._gone = asyncio.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._shut_down = False

    @property
    def gone(self) -> asyncio.Event:
        return self._gone

    @property
    def shut_down(self) -> bool:
        return self._shut_down

    def stop_for_shutdown(self) -> None:
        """Stop the call as if its caller had left (the upstream call is abandoned), but remember that the
        caller is still there: the front door ends its reply with an error."""
        if not self._gone.is_set():
            self._shut_down = True
        self.leave()

    def on_gone(self, callback: Callable[[], None]) -> None:
        if self._gone.is_set():
            callback()
        else:
            self._callbacks.append(callback)

    def leave(self) -> None:
        """The caller has left: tell whoever waits on the upstream (once)."""
        if self._gone.is_set():
            return
        self._gone.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class DisconnectWatch(Departure):
    """The ``gone`` half of a ResponseSink for an HTTP client: a task that notices its disconnect."""

    __slots__ = ("_receive", "_timer", "_watcher")

    def __init__(self, receive: Receive) -> None:
        super().__init__()
        self._receive = receive
        self._watcher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def watch(self) -> None:
        """Start listening for the client's disconnect (once its request body has been read), if the call
        is still running WATCH_AFTER_S from now."""
        if self._watcher is None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, self._start_watcher)

    def _start_watcher(self) -> None:
        self._timer = None
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._watcher is not None:
            self._watcher.cancel()

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.leave()


class AsgiSink(DisconnectWatch):
    """The reply of an HTTP call, relayed as it comes, with a watcher that notices a disconnect."""

    __slots__ = ("_extra", "_send", "ended", "last_bytes", "started")

    def __init__(self, receive: Receive, send: Send, extra_headers: RawHeaders) -> None:
        super().__init__(receive)
        self._send = send
        self._extra = extra_headers
        self.started = False  # the status and headers are sent
        self.ended = False  # the last chunk is sent
        self.last_bytes = b""  # the end of what was sent, to end a broken-off stream cleanly

    async def start(self, status: int, headers: RawHeaders) -> None:
        headers.extend(self._extra)
        self.started = True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def send(self, chunk: bytes, *, more: bool) -> None:
        if not more:
            self.ended = True
        if chunk:
            self.last_bytes = chunk[-4:]
        await self._send({"type": "http.response.body", "body": chunk, "more_body": more})
