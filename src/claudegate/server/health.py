"""``/health/ready``: is the database answering, and is the upstream reachable with the configured key?"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import orjson

from claudegate.upstream.probe import probe_upstream

if TYPE_CHECKING:
    from claudegate.runtime.services import Services

__all__ = ["HealthCheck"]

_CACHE_SECONDS = 5.0  # probes hit the upstream; a load balancer polling every second should not


class HealthCheck:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._cached: tuple[float, int, bytes] | None = None
        self._lock = asyncio.Lock()

    async def ready(self) -> tuple[int, bytes]:
        async with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < _CACHE_SECONDS:
                return self._cached[1], self._cached[2]
            database = await self._services.store.ping()
            upstream, detail = await self._upstream_ready()
            status = 200 if database and upstream else 503
            body = orjson.dumps(
                {
                    "status": "ready" if status == 200 else "not_ready",
                    "database": "ok" if database else "unavailable",
                    "upstream": {
                        "name": self._services.upstream.name,
                        "status": "ok" if upstream else detail,
                    },
                }
            )
            self._cached = (now, status, body)
            return status, body

    async def _upstream_ready(self) -> tuple[bool, str]:
        status = await probe_upstream(self._services.http, self._services.upstream)
        if status == 200:
            return True, "ok"  # reachable, and it accepts the configured key
        return False, f"answered {status}" if isinstance(status, int) else status
