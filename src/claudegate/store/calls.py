"""Call diagnostics in the store: finding a call's usage record by any id a client sees, and the request
payloads of organisations that log them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from claudegate.store.tables import CallPayload, UsageRow

__all__ = ["CallRepository"]

_USAGE = cast("Table", UsageRow.__table__)
_PAYLOADS = cast("Table", CallPayload.__table__)


class CallRepository:
    __slots__ = ("_engine",)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def find(self, any_id: str) -> dict[str, Any] | None:
        """The usage record whose gateway request id, upstream request id or message id is ``any_id``."""
        query = (
            select(_USAGE)
            .where(
                or_(
                    _USAGE.c.request_id == any_id,
                    _USAGE.c.upstream_request_id == any_id,
                    _USAGE.c.message_id == any_id,
                )
            )
            .order_by(_USAGE.c.id)
            .limit(1)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return dict(row._mapping) if row is not None else None

    async def payload(self, request_id: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(_PAYLOADS).where(_PAYLOADS.c.request_id == request_id))).first()
        return dict(row._mapping) if row is not None else None

    async def insert_payloads(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            async with self._engine.begin() as conn:
                await conn.execute(insert(_PAYLOADS), list(rows))

    async def purge_payloads(self, before: datetime) -> int:
        """Delete payloads logged before ``before``; how many went."""
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(_PAYLOADS).where(_PAYLOADS.c.created_at < before))
        return int(result.rowcount or 0)
