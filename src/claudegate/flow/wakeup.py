"""A task's wait until a time on the event loop's clock, or until something changes, whichever is first."""

from __future__ import annotations

import asyncio
import math

__all__ = ["Wakeup"]


class Wakeup:
    """``await sleep_until(when)`` returns at ``when`` (``loop.call_at``) or as soon as ``wake()`` is called;
    a ``wake()`` that came while the task was busy (after its last ``clear()``) makes the next sleep return at
    once, so a change is never missed between looking and sleeping."""

    __slots__ = ("_future", "_woken")

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None
        self._woken = False

    def clear(self) -> None:
        """The task is about to look at everything again."""
        self._woken = False

    def wake(self) -> None:
        self._woken = True
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    async def sleep_until(self, when: float) -> None:
        if self._woken:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._future = future
        timer = loop.call_at(when, _resolve, future) if math.isfinite(when) else None
        try:
            await future
        finally:
            self._future = None
            if timer is not None:
                timer.cancel()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
