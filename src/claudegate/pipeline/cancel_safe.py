"""Taking a shared reservation so that a cancellation cannot lose it.

A reservation in shared state (Redis) is taken by one round trip: the command runs on the server, then the
reply travels back. A task cancelled while it waits for that reply would never learn what the server took,
and what it took (a concurrency slot, a budget reservation) would stay taken until it expired. So the round
trip runs in a task of its own that the caller's cancellation does not reach; a cancelled caller waits for
it to end, gives back whatever it took, and only then lets the cancellation go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from claudegate.flow.state import FlowState, MemoryState

__all__ = ["may_be_cut_short", "take_or_give_back"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Give-backs still running: the loop keeps only weak references to tasks, and a give-back must finish even
# when the task that started it is cancelled once more while it waits.
_giving_back: set[asyncio.Task[None]] = set()


def may_be_cut_short(state: FlowState) -> bool:
    """Whether a take from ``state`` can be cancelled halfway: this process's memory takes without waiting
    (so it needs no guard, and saves the task one); anything else is a round trip."""
    return not isinstance(state, MemoryState)


async def take_or_give_back(take: Coroutine[Any, Any, T], give_back: Callable[[T], Awaitable[None]]) -> T:
    """What ``take`` returns, as ``await take`` would; if the caller is cancelled before ``take`` ends,
    ``take`` still runs to its end, ``give_back`` is called with what it returned, and the cancellation is
    raised after that. ``give_back`` must give back nothing for a result that took nothing."""
    taking = asyncio.ensure_future(take)
    try:
        return await asyncio.shield(taking)
    except asyncio.CancelledError:
        returning = asyncio.ensure_future(_give_back_when_taken(taking, give_back))
        _giving_back.add(returning)
        returning.add_done_callback(_giving_back.discard)
        # Waited for, so that a cancelled call holds nothing once it has ended; cancelled again meanwhile,
        # the give-back still finishes on its own.
        await asyncio.shield(returning)
        raise


async def _give_back_when_taken(taking: asyncio.Future[T], give_back: Callable[[T], Awaitable[None]]) -> None:
    try:
        taken = await taking
    except Exception:
        return  # the take failed: it took nothing
    try:
        await give_back(taken)
    except Exception:
        # The cancellation goes on regardless; what could not be given back expires with its key.
        logger.warning("could not give back a reservation of a cancelled call", exc_info=True)
