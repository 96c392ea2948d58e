"""The store facade: one engine and the repositories that share it."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from claudegate.store._engine import create_engine
from claudegate.store.api_keys import KeyRepository
from claudegate.store.batches import BatchRepository
from claudegate.store.budgets import BudgetRepository
from claudegate.store.chats import ChatRepository
from claudegate.store.files import FileRepository
from claudegate.store.migrate import upgrade_database
from claudegate.store.orgs import OrgRepository
from claudegate.store.prompts import PromptRepository
from claudegate.store.usage import UsageRepository

__all__ = ["Store"]


class Store:
    """Everything claudegate keeps in its database. Open with :meth:`open`, and ``await close()`` at the end.

    ``store.keys`` is the :class:`~claudegate.keys.KeyLookup` for a KeyResolver and ``store.usage`` the
    :class:`~claudegate.accounting.usage.UsageSink` for a UsageWriter.
    """

    __slots__ = ("batches", "budgets", "chats", "engine", "files", "keys", "orgs", "prompts", "usage")

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.orgs = OrgRepository(engine)
        self.keys = KeyRepository(engine)
        self.usage = UsageRepository(engine)
        self.batches = BatchRepository(engine)
        self.files = FileRepository(engine)
        self.chats = ChatRepository(engine)
        self.prompts = PromptRepository(engine)
        self.budgets = BudgetRepository(engine)

    @classmethod
    async def open(cls, url: str, *, upgrade: bool = True) -> Store:
        """Connect to ``url``, first bringing its schema up to date unless ``upgrade`` is false."""
        if upgrade:
            await upgrade_database(url)
        return cls(create_engine(url))

    async def ping(self) -> bool:
        """Whether the database answers (for health checks)."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            return False
        return True

    async def close(self) -> None:
        await self.engine.dispose()
