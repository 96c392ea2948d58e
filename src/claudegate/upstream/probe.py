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

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(_INTERVAL_S)
            for member in self._pool.members:
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
