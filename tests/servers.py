"""Real servers on loopback for tests: each runs its own event loop in a background thread, so synchronous
SDK clients and async tests can both talk to it over HTTP."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Protocol


class _Server(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


@contextmanager
def running_in_thread(make_server: Callable[[], _Server]) -> Iterator[_Server]:
    """Start ``make_server()`` in a thread with its own event loop; stop it on exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-server", daemon=True)
    thread.start()

    def call(coro: Awaitable[object]) -> None:
        # A guard against a hang, not a measure: a busy machine may take seconds to open a store and migrate.
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)  # type: ignore[arg-type]

    async def build() -> _Server:
        return make_server()

    server = asyncio.run_coroutine_threadsafe(build(), loop).result(timeout=30)
    call(server.start())
    try:
        yield server
    finally:
        call(server.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
