"""An event loop whose clock moves only when nothing else can run, for tests of code that waits.

Code under test takes every time from ``loop.time()`` and waits with futures and ``loop.call_at``; on this
loop, a wait that would block instead moves the clock straight to the next timer, so a test of a queue that
waits seconds runs in microseconds, and the times it sees are exact. A loop with nothing scheduled and
nothing to do would wait for ever: it raises instead, so a test that deadlocks fails at once.

Hand-written rather than a plugin (``looptime``): the unit tests of admission need only this, run on a loop
of their own per test, independent of the session loop the other tests share.
"""

from __future__ import annotations

import asyncio
import functools
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec

__all__ = ["VirtualClockLoop", "now", "virtual_time"]

_START = 1000.0
_P = ParamSpec("_P")


class _Clock:
    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = _START


class _TimeTravelSelector(selectors.SelectSelector):
    """Polls without blocking; where the loop would block until a timer, moves the clock to it."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("the event loop would wait for ever: nothing is scheduled")
        self._clock.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._clock = _Clock()
        super().__init__(_TimeTravelSelector(self._clock))

    def time(self) -> float:
        return self._clock.now


def now() -> float:
    """The running loop's time."""
    return asyncio.get_running_loop().time()


def virtual_time(test: Callable[_P, Coroutine[Any, Any, None]]) -> Callable[_P, None]:
    """Run an async test on a ``VirtualClockLoop`` of its own."""

    @functools.wraps(test)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> None:
        loop = VirtualClockLoop()
        try:
            loop.run_until_complete(test(*args, **kwargs))
        finally:
            # As asyncio.run does: what the test left running (a queue's dispatcher) is cancelled first.
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.close()

    return run
