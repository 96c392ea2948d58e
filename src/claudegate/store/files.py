"""Who owns each file uploaded through the Files API, so one organisation can never see another's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from claudegate.store.owned_pages import owned_page
from claudegate.store.rows import AlreadyExistsError, BatchPage
from claudegate.store.tables import UploadedFile

__all__ = ["FileOwner", "FileRepository"]


@dataclass(frozen=True, slots=True)
class FileOwner:
    file_id: str
    org_id: int
    user_id: int | None
    key_id: int | None
    created_at: datetime
    upstream: str | None  # the upstream it was uploaded to


class FileRepository:
    __slots__ = ("_engine",)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record_file(
        self,
        file_id: str,
        *,
        org_id: int,
        user_id: int | None,
        key_id: int | None,
        upstream: str | None,
        created_at: datetime | None = None,
    ) -> None:
        """Remember who uploaded a file, and to which upstream. AlreadyExistsError if already recorded."""
        values = {
            "id": file_id,
            "org_id": org_id,
            "user_id": user_id,
            "key_id": key_id,
            "created_at": created_at or datetime.now(UTC),
            "upstream": upstream,
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(UploadedFile).values(values))
        except IntegrityError:
            raise AlreadyExistsError(f"file {file_id!r} is already recorded") from None

    async def get_file_owner(self, file_id: str) -> FileOwner | None:
        stmt = select(
            UploadedFile.id,
            UploadedFile.org_id,
            UploadedFile.user_id,
            UploadedFile.key_id,
            UploadedFile.created_at,
            UploadedFile.upstream,
        ).where(UploadedFile.id == file_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return FileOwner(*row) if row else None

    async def owned_by(self, org_id: int, file_ids: list[str]) -> set[str]:
        """Those of ``file_ids`` that the organisation uploaded."""
        stmt = select(UploadedFile.id).where(UploadedFile.org_id == org_id, UploadedFile.id.in_(file_ids))
        async with self._engine.connect() as conn:
            return {row[0] for row in await conn.execute(stmt)}

    async def forget_file(self, file_id: str) -> None:
        """The file was deleted upstream: it no longer exists for anyone."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(UploadedFile).where(UploadedFile.id == file_id))

    async def list_file_ids(
        self,
        org_id: int,
        *,
        limit: int = 20,
        after_id: str | None = None,
        before_id: str | None = None,
    ) -> BatchPage:
        """A page of an organisation's file ids, newest first, paginated like Anthropic's list endpoints
        (``after_id``: the older page after that id; ``before_id``: the newer page before it). A cursor that
        is not one of the organisation's files gives an empty page."""
        return await owned_page(
            self._engine, UploadedFile, org_id, limit=limit, after_id=after_id, before_id=before_id
        )
