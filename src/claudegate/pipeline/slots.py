"""Waiting for a concurrency slot without polling.

The slots themselves live in the ``FlowState`` (``acquire``/``release``: this process's memory, or Redis for
several processes). Calls that find a slot's limit reached wait here in arrival order, each on a future:
a slot freed through ``release`` wakes the first waiter at once, which takes it. A call that arrives while
others wait queues behind them rather than taking a slot that has just been freed for the first.

Slots shared with other processes can also be freed there, which wakes nobody here; for them the first
waiter also looks again every ``recheck_s`` seconds (a bounded timer on the event loop, not a poll of every
waiter). Every wait is a future woken by ``loop.call_at`` or by a release, so a test moves the loop's clock.

Taking a shared slot is a round trip; a call cancelled during it gives the slot back if the take got one
(``cancel_safe``), rather than leaving it taken until its key expires.
"""

from __future__ import annotations

import asyncio
from collections import deque

from claudegate.flow.state import FlowState
from claudegate.pipeline.cancel_safe import may_be_cut_short, take_or_give_back

__all__ = ["SlotWaiters"]


class _Waiter:
    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_result(None)


class SlotWaiters:
    """The calls of this process waiting for a concurrency slot, per slot key."""

    __slots__ = ("_guarded", "_queues", "_recheck_s", "_state")

    def __init__(self, state: FlowState, *, recheck_s: float | None) -> None:
        self._state = state
        self._guarded = may_be_cut_short(state)
        self._recheck_s = recheck_s  # None: every slot is freed through this object
        self._queues: dict[str, deque[_Waiter]] = {}

    def waiting(self, key: str) -> int:
        queue = self._queues.get(key)
        return len(queue) if queue is not None else 0

    async def acquire(self, key: str, limit: int, deadline: float) -> bool:
        """Take one of ``limit`` slots of ``key``, waiting until ``deadline`` (the event loop's clock) at the
        latest; False when none was free by then (nothing taken). Cancelled, it leaves the queue."""
        queue = self._queues.get(key)
        if not queue and await self._take(key, limit):
            return True
        loop = asyncio.get_running_loop()
        waiter = _Waiter()
        queue = self._queues.setdefault(key, deque())
        queue.append(waiter)
        try:
            while True:
                if queue[0] is waiter and await self._take(key, limit):
                    return True
                now = loop.time()
                if now >= deadline:
                    return False
                wake_at = deadline
                if self._recheck_s is not None and queue[0] is waiter:
                    wake_at = min(deadline, now + self._recheck_s)
                waiter.future = loop.create_future()
                timer = loop.call_at(wake_at, waiter.wake)
                try:
                    await waiter.future
                finally:
                    timer.cancel()
        finally:
            queue.remove(waiter)
            if not queue:
                if self._queues.get(key) is queue:
                    del self._queues[key]
            else:
                # The next in line looks now: more than one slot may be free (a limit raised, several ends),
                # and a waiter that leaves first must not keep a freed slot from it.
                queue[0].wake()

    async def _take(self, key: str, limit: int) -> bool:
        if not self._guarded:
            return await self._state.acquire(key, limit)
        taking = self._state.acquire(key, limit)
        return await take_or_give_back(taking, lambda taken: self._untake(key, taken))

    async def _untake(self, key: str, taken: bool) -> None:
        if taken:
            await self.release([key])

    async def release(self, keys: list[str]) -> None:
        """Free one slot of each key, and wake the first call waiting for it."""
        for key in keys:
            await self._state.release(key)
            queue = self._queues.get(key)
            if queue:
                queue[0].wake()
