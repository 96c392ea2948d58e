"""Health probes for upstreams whose circuit breaker is open.

An open breaker keeps traffic away; once its open period is over, a cheap authenticated request
(``GET /v1/models?limit=1``) decides whether the upstream is back, so the first real call after an outage
does not have to be the probe. A passed probe lets calls through on trial: the probe cannot see an upstream
that fails only its calls, so the first failed call opens the breaker again at once. The same loop adopts
breakers opened by other gateway processes (a flag in the shared state), so one process's discovery spares
the others the failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from claudegate.flow.breaker import BreakerState
from claudegate.flow.state import FlowState
from claudegate.upstream.http import HttpClient
from claudegate.upstream.pool import PoolMember, UpstreamPool, breaker_flag
from claudegate.upstream.target import Upstream

__all__ = ["BreakerProber", "probe_upstream"]

logger = logging.getLogger(__name__)

_INTERVAL_S = 1.0
_TIMEOUT_S = 5.0
_STOP_WAIT_S = 1.0  # at most: a probe under way is abandoned (its request has its own timeout)


async def probe_upstream(http: HttpClient, upstream: Upstream) -> int | str:
    """Ask the upstream for one model with its key: the HTTP status, or why it could not be reached."""
    headers = [(b"x-api-key", upstream.api_key_bytes), (b"anthropic-version", b"2023-06-01")]
    try:
        async with asyncio.timeout(_TIMEOUT_S):
            status, _, _ = await http.fetch("GET", upstream.base_url + "/v1/models?limit=1", headers)
            return status
    except (ConnectionError, TimeoutError) as error:
        return f"unreachable ({type(error).__name__})"


class BreakerProber:
    def __init__(self, pool: UpstreamPool, http: HttpClient, state: FlowState) -> None:
        self._pool = pool
        self._http = http
        self._state = state
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the loop. Cancelling it is not enough: the Redis client can swallow a cancellation that
        lands while a command is under way (the loop then goes on, and waiting for it would never end), so
        the loop also stops at its next turn, and the wait for it is bounded."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=_STOP_WAIT_S)
            if not done:
                logger.warning("the breaker prober did not stop within %g s; left behind", _STOP_WAIT_S)
            elif not task.cancelled() and task.exception() is not None:
                logger.warning("the breaker prober had failed", exc_info=task.exception())

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), _INTERVAL_S)
            for member in self._pool.members:
                if self._stopping.is_set():
                    return
                shared = await self._state.tripped(breaker_flag(member.name))
                now = time.monotonic()
                if shared > 0:
                    member.breaker.force_open(now, shared)
                elif member.breaker.state(now) is BreakerState.HALF_OPEN and member.breaker.allow(now):
                    await self.probe(member)

    async def probe(self, member: PoolMember) -> bool:
        upstream = member.upstream
        status = await probe_upstream(self._http, upstream)
        healthy = isinstance(status, int) and status < 500  # up, even if this key may not list models
        if healthy:
            member.breaker.passed_probe()
            await self._state.trip(breaker_flag(upstream.name), 0)
            logger.info("upstream %s answered its health probe: back in use", upstream.name)
        else:
            member.breaker.record_failure(time.monotonic())
        return healthy
