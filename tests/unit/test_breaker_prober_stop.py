"""Stopping the breaker prober at shutdown when its loop is waiting on Redis: the Redis client can swallow a
cancellation that lands during a command (the task goes on as if nothing happened), and a shutdown that
waited for the cancelled loop then never ended (the gateway worker was killed by its parent)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from claudegate.flow.state import MemoryState
from claudegate.upstream.http import HttpClient
from claudegate.upstream.pool import PoolMember, UpstreamPool
from claudegate.upstream.probe import BreakerProber
from claudegate.upstream.target import Upstream
from tests.unit.lease_support import breaker
from tests.unit.virtual_time import now, virtual_time


class SwallowingState(MemoryState):
    """Shared state whose flag lookups take a round trip, and which, like the Redis client, lets a
    cancellation during that round trip go unnoticed by the caller."""

    def __init__(self) -> None:
        super().__init__(lambda: asyncio.get_running_loop().time())
        self.lookups = 0
        self.looking = asyncio.Event()

    async def tripped(self, key: str) -> float:
        self.lookups += 1
        self.looking.set()
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        return 0.0


@virtual_time
async def test_the_prober_stops_even_when_its_cancellation_is_swallowed() -> None:
    state = SwallowingState()
    member = PoolMember(Upstream("a", "http://127.0.0.1:9/a", "sk-test"), breaker())
    prober = BreakerProber(
        UpstreamPool([member], routing="priority"), cast(HttpClient, cast(Any, None)), state
    )
    prober.start()
    await state.looking.wait()  # the loop is in the middle of a round trip to the shared state
    started = now()
    await asyncio.wait_for(prober.stop(), 5.0)  # before: waited for the loop for ever
    assert now() - started < 1.0
    lookups = state.lookups
    await asyncio.sleep(3.0)
    assert state.lookups == lookups  # the loop has ended: nothing asks the shared state any more
