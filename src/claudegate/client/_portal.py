"""An event loop in a thread of its own, for the synchronous client.

Claudegate's services (database engine, HTTP session, flow state, usage writer) live on one event loop.
The sync client owns one such loop, started in a daemon thread on first use, and runs every call on it,
rather than an ``asyncio.run`` per call, which would make and tear down a loop (and so the services) each
time. Callers in any thread block on a future; if a caller is interrupted (KeyboardInterrupt), its
coroutine is cancelled, which tells the pipeline that the caller left.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["Portal"]

T = TypeVar("T")

_END = object()


class Portal:
    __slots__ = ("_closed", "_lock", "_loop", "_thread")

    def __init__(self) -> None:
        self._closed = False
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._loop is not None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("this claudegate client is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="claudegate-client", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the portal's loop and wait for its result."""
        try:
            loop = self._running_loop()
            if self._thread is threading.current_thread():
                raise RuntimeError(
                    "the synchronous claudegate client was called from its own event loop (in an on_queued "
                    "callback?); use claudegate.AsyncClient there"
                )
        except RuntimeError:
            coroutine.close()  # never to run: say so quietly rather than warn that it was never awaited
            raise
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # a no-op once done; otherwise the caller was interrupted: stop the coroutine
            raise

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """Iterate an async iterator living on the portal's loop, one item per round trip."""
        while True:
            item = self.run(_next(iterator))
            if item is _END:
                return
            yield item  # type: ignore[misc]

    def close(self) -> None:
        """Stop the loop and its thread (after the client's own close has run on it)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            self._closed = True
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _next(iterator: AsyncIterator[T]) -> T | object:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return _END
