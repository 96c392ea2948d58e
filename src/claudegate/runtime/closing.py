"""Closing services at shutdown in a bounded time, whatever the services they talk to do.

A gateway process that does not end is killed by whoever supervises it (the parent of ``--workers``, a
container runtime), and whatever its shutdown had not done by then is lost. Each step of a shutdown that
waits on something outside the process (Redis, the database, a webhook) therefore gets a limit, and the
whole shutdown a budget: a step that has not finished by its limit is cancelled and left behind (it may
ignore the cancellation: it is not waited for), the next step runs, and the process ends in time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

__all__ = ["CloseStep", "close_in_order", "finish_within"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CloseStep:
    """One part of a shutdown: what it closes (for the log), how, and for how long at most."""

    name: str
    close: Callable[[], Awaitable[None]]
    limit_s: float


async def finish_within(name: str, closing: Awaitable[None], limit_s: float) -> bool:
    """Await ``closing`` for at most ``limit_s``; True if it finished without an error. Past the limit it is
    cancelled and not waited for, so a step that ignores its cancellation cannot hold the shutdown."""
    task = asyncio.ensure_future(closing)
    done, _ = await asyncio.wait({task}, timeout=max(0.0, limit_s))
    if not done:
        task.cancel()
        task.add_done_callback(_quietly)
        logger.warning("shutdown: closing %s took longer than %g s; left behind", name, limit_s)
        return False
    error = task.exception()
    if error is not None:
        logger.warning("shutdown: closing %s failed", name, exc_info=error)
        return False
    return True


async def close_in_order(steps: Sequence[CloseStep], budget_s: float) -> None:
    """Run ``steps`` one after the other, each within its limit and all within ``budget_s``: a step gets
    what is left of the budget if that is less than its limit."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s
    for step in steps:
        await finish_within(step.name, step.close(), min(step.limit_s, deadline - loop.time()))


def _quietly(task: asyncio.Future[None]) -> None:
    """Retrieve the outcome of a step left behind (asyncio would otherwise log it as never retrieved)."""
    if not task.cancelled():
        task.exception()
