"""One page of what an organisation owns upstream (message batches, uploaded files), newest first, paginated
like Anthropic's list endpoints. Both tables keep the same columns for it: ``id``, ``org_id``, ``upstream``
and ``created_at``."""

from __future__ import annotations

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from claudegate.store.rows import BatchPage
from claudegate.store.tables import MessageBatch, UploadedFile

__all__ = ["owned_page"]


async def owned_page(
    engine: AsyncEngine,
    table: type[MessageBatch] | type[UploadedFile],
    org_id: int,
    *,
    limit: int,
    after_id: str | None,
    before_id: str | None,
) -> BatchPage:
    """``after_id`` gives the (older) page after that id, ``before_id`` the (newer) page before it. A cursor
    that is not one of the organisation's rows gives an empty page."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    position = tuple_(table.created_at, table.id)
    stmt = select(table.id, table.upstream).where(table.org_id == org_id)
    async with engine.connect() as conn:
        cursor_id = before_id if before_id is not None else after_id
        if cursor_id is not None:
            cursor = (
                await conn.execute(
                    select(table.created_at, table.id).where(table.id == cursor_id, table.org_id == org_id)
                )
            ).first()
            if cursor is None:
                return BatchPage(ids=[], has_more=False, upstreams=[])
            cursor_position = tuple(cursor)
            if before_id is not None:
                stmt = stmt.where(position > cursor_position).order_by(table.created_at, table.id)
            else:
                stmt = stmt.where(position < cursor_position)
        if before_id is None:
            stmt = stmt.order_by(table.created_at.desc(), table.id.desc())
        rows = [(row[0], row[1]) for row in await conn.execute(stmt.limit(limit + 1))]
    has_more = len(rows) > limit
    rows = rows[:limit]
    if before_id is not None:
        rows.reverse()
    return BatchPage(ids=[row_id for row_id, _ in rows], has_more=has_more, upstreams=[u for _, u in rows])
