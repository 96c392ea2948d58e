"""Who owns each message batch, so one organisation can never see or cancel another's."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from claudegate.store.owned_pages import owned_page
from claudegate.store.rows import AlreadyExistsError, BatchOwner, BatchPage
from claudegate.store.tables import MessageBatch

__all__ = ["BatchRepository"]


class BatchRepository:
    __slots__ = ("_engine",)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record_batch(
        self,
        batch_id: str,
        *,
        org_id: int,
        user_id: int | None,
        key_id: int | None,
        upstream: str | None = None,
        created_at: datetime | None = None,
    ) -> None:
        """Remember who created an upstream batch, and on which upstream. AlreadyExistsError if the id is
        already recorded."""
        values = {
            "id": batch_id,
            "org_id": org_id,
            "user_id": user_id,
            "key_id": key_id,
            "created_at": created_at or datetime.now(UTC),
            "upstream": upstream,
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(MessageBatch).values(values))
        except IntegrityError:
            raise AlreadyExistsError(f"batch {batch_id!r} is already recorded") from None

    async def claim_accounting(self, batch_id: str) -> bool:
        """Mark a batch's results as accounted; True only for the one caller that marked it first, so each
        batch's usage is recorded once however often (and by however many processes) its results are read."""
        stmt = (
            update(MessageBatch)
            .where(MessageBatch.id == batch_id, MessageBatch.accounted_at.is_(None))
            .values(accounted_at=datetime.now(UTC))
        )
        async with self._engine.begin() as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount)

    async def forget_batch(self, batch_id: str) -> None:
        """Drop a batch deleted upstream: it is no longer listed, nor found."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(MessageBatch).where(MessageBatch.id == batch_id))

    async def get_batch_owner(self, batch_id: str) -> BatchOwner | None:
        stmt = select(
            MessageBatch.id,
            MessageBatch.org_id,
            MessageBatch.user_id,
            MessageBatch.key_id,
            MessageBatch.created_at,
            MessageBatch.upstream,
        ).where(MessageBatch.id == batch_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return BatchOwner(*row) if row else None

    async def list_batch_ids(
        self,
        org_id: int,
        *,
        limit: int = 20,
        after_id: str | None = None,
        before_id: str | None = None,
    ) -> BatchPage:
        """A page of an organisation's batch ids, newest first, paginated like Anthropic's list endpoints:
        ``after_id`` gives the (older) page after that id, ``before_id`` the (newer) page before it.
        A cursor that is not one of the organisation's batches gives an empty page."""
        return await owned_page(
            self._engine, MessageBatch, org_id, limit=limit, after_id=after_id, before_id=before_id
        )
