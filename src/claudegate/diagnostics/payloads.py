"""Logging the requests of organisations that opt in (``payload_log_orgs``), so a call can be reproduced
with ``claudegate calls show --curl``; off by default, and purged after ``payload_retention_days``.

A call only appends to a bounded buffer; a background task writes the buffer in batches and purges old
payloads now and then. If the database falls behind and the buffer fills, payloads are dropped (logged):
they are a diagnostic aid, and must never hold up or fail a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from claudegate.pipeline.request import CallRequest
from claudegate.pipeline.sink import RawHeaders
from claudegate.store.calls import CallRepository

__all__ = ["PayloadLog", "masked_headers"]

logger = logging.getLogger(__name__)

_SECRET_HEADERS = frozenset({b"x-api-key", b"authorization", b"proxy-authorization", b"cookie"})
_HOP_HEADERS = frozenset(
    {b"host", b"content-length", b"connection", b"accept-encoding", b"transfer-encoding"}
)
_BUFFER_LIMIT = 10_000
_PURGE_EVERY_S = 3600.0


def masked_headers(headers: RawHeaders) -> list[list[str]]:
    """The headers worth replaying, each credential replaced by ``***``."""
    return [
        [name.decode("latin-1"), "***" if name in _SECRET_HEADERS else value.decode("latin-1")]
        for name, value in headers
        if name not in _HOP_HEADERS
    ]


class PayloadLog:
    def __init__(
        self,
        calls: CallRepository,
        *,
        orgs: list[str],
        retention_days: float,
        flush_interval_s: float,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._calls = calls
        self._all = "*" in orgs
        self._orgs = frozenset(orgs)
        self._retention = timedelta(days=retention_days)
        self._interval = flush_interval_s
        self._now = now
        self._buffer: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._last_purge: datetime | None = None

    def wants(self, org_name: str) -> bool:
        return self._all or org_name in self._orgs

    def submit(self, call: CallRequest) -> None:
        if not self.wants(call.identity.org_name):
            return
        if len(self._buffer) >= _BUFFER_LIMIT:
            logger.warning("payload log full; the payload of %s is not kept", call.request_id)
            return
        self._buffer.append(
            {
                "request_id": call.request_id,
                "org_id": call.identity.org_id,
                "created_at": self._now(),
                "path": call.path_and_query,
                "headers": masked_headers(call.headers),
                "body": call.body,
            }
        )

    def start(self) -> None:
        if self._orgs and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="claudegate-payloads")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):  # best effort at shutdown: payloads are not records
            await self.flush()

    async def flush(self) -> None:
        rows, self._buffer = self._buffer, []
        await self._calls.insert_payloads(rows)
        now = self._now()
        if self._last_purge is None or (now - self._last_purge).total_seconds() >= _PURGE_EVERY_S:
            self._last_purge = now
            purged = await self._calls.purge_payloads(now - self._retention)
            if purged:
                logger.info("purged %d logged payloads older than the retention period", purged)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception as error:  # a failing database costs the payloads of this batch, nothing more
                logger.warning("writing logged payloads failed: %s", type(error).__name__)
