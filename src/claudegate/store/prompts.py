"""Prompt versions: named system prompts of an organisation, numbered immutable versions, which one is active,
an optional A/B split by weight, rollback, and what each version's conversations used."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import case, distinct, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from claudegate.store.chat_rows import PromptRow, PromptVersionRow, VersionUsage
from claudegate.store.rows import StoreError, check_name
from claudegate.store.tables import ChatMessage, Conversation, Prompt, PromptVersion

__all__ = ["PromptRepository", "check_split"]

MAX_SYSTEM_CHARS: Final = 1_000_000
_MAX_NOTE: Final = 500
_ATTEMPTS: Final = 5  # creating versions concurrently: numbers are taken first come, first served

_LATEST = (
    select(func.max(PromptVersion.version))
    .where(PromptVersion.prompt_id == Prompt.id)
    .correlate(Prompt)
    .scalar_subquery()
)
_PROMPTS = select(
    Prompt.id,
    Prompt.org_id,
    Prompt.name,
    Prompt.active_version,
    Prompt.previous_version,
    Prompt.split,
    _LATEST,
    Prompt.created_at,
    Prompt.updated_at,
)
_VERSIONS = select(
    PromptVersion.id,
    PromptVersion.prompt_id,
    PromptVersion.version,
    PromptVersion.system,
    PromptVersion.model,
    PromptVersion.note,
    PromptVersion.created_at,
)


def _prompt(row: Any) -> PromptRow:
    split = row[5]
    return PromptRow(
        id=row[0],
        org_id=row[1],
        name=row[2],
        active_version=row[3],
        previous_version=row[4],
        split={int(version): float(weight) for version, weight in split.items()} if split else None,
        latest_version=row[6] or 0,
        created_at=row[7],
        updated_at=row[8],
    )


def _version(row: Any) -> PromptVersionRow:
    return PromptVersionRow(*row)


def check_split(weights: dict[int, float], versions: set[int]) -> dict[int, float]:
    """Weights by version for an A/B split: at least one version, each an existing one, each weight a positive
    finite number. StoreError says what is wrong."""
    if not weights:
        raise StoreError("a split needs at least one version and its weight")
    for version, weight in weights.items():
        if version not in versions:
            raise StoreError(f"version {version} does not exist")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(weight)
            or weight <= 0
        ):
            raise StoreError(f"the weight of version {version} must be a positive number; got {weight!r}")
    return {version: float(weight) for version, weight in sorted(weights.items())}


class PromptRepository:
    __slots__ = ("_engine",)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_version(
        self,
        org_id: int,
        name: str,
        *,
        system: str,
        model: str | None = None,
        note: str | None = None,
        activate: bool | None = None,
    ) -> tuple[PromptRow, PromptVersionRow]:
        """A new version of the prompt (created with version 1 if it does not exist yet). ``activate``: make
        it the active version (which clears any split); None activates it only if none is active yet."""
        check_name("prompt", name)
        if not system or len(system) > MAX_SYSTEM_CHARS:
            raise StoreError(f"system: the prompt text must be 1 to {MAX_SYSTEM_CHARS:,} characters")
        if note is not None and len(note) > _MAX_NOTE:
            raise StoreError(f"note: at most {_MAX_NOTE} characters")
        if model is not None and not 1 <= len(model) <= 128:
            raise StoreError("model: 1 to 128 characters")
        for attempt in range(_ATTEMPTS):
            try:
                return await self._create_version(
                    org_id, name, system=system, model=model, note=note, activate=activate
                )
            except IntegrityError:
                if attempt == _ATTEMPTS - 1:
                    raise StoreError(f"prompt {name!r} is being changed by others; retry") from None
        raise AssertionError("unreachable")

    async def _create_version(
        self,
        org_id: int,
        name: str,
        *,
        system: str,
        model: str | None,
        note: str | None,
        activate: bool | None,
    ) -> tuple[PromptRow, PromptVersionRow]:
        now = datetime.now(UTC)
        async with self._engine.begin() as conn:
            prompt = await self._find(conn, org_id, name)
            if prompt is None:
                await conn.execute(
                    insert(Prompt).values(org_id=org_id, name=name, created_at=now, updated_at=now)
                )
                prompt = await self._find(conn, org_id, name)
                assert prompt is not None
            version = prompt.latest_version + 1
            await conn.execute(
                insert(PromptVersion).values(
                    prompt_id=prompt.id,
                    version=version,
                    system=system,
                    model=model,
                    note=note,
                    created_at=now,
                )
            )
            if activate or (activate is None and prompt.active_version is None):
                await self._activate(conn, prompt, version)
            else:
                await conn.execute(update(Prompt).where(Prompt.id == prompt.id).values(updated_at=now))
            found = await self._find(conn, org_id, name)
            row = (
                await conn.execute(
                    _VERSIONS.where(PromptVersion.prompt_id == prompt.id, PromptVersion.version == version)
                )
            ).one()
        assert found is not None
        return found, _version(row)

    async def _find(self, conn: AsyncConnection, org_id: int, name: str) -> PromptRow | None:
        row = (await conn.execute(_PROMPTS.where(Prompt.org_id == org_id, Prompt.name == name))).first()
        return _prompt(row) if row else None

    async def _activate(self, conn: AsyncConnection, prompt: PromptRow, version: int) -> None:
        previous = prompt.active_version if prompt.active_version != version else prompt.previous_version
        await conn.execute(
            update(Prompt)
            .where(Prompt.id == prompt.id)
            .values(
                active_version=version, previous_version=previous, split=None, updated_at=datetime.now(UTC)
            )
        )

    async def get_prompt(self, org_id: int, name: str) -> PromptRow | None:
        async with self._engine.connect() as conn:
            return await self._find(conn, org_id, name)

    async def list_prompts(self, org_id: int) -> list[PromptRow]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_PROMPTS.where(Prompt.org_id == org_id).order_by(Prompt.name))).all()
        return [_prompt(row) for row in rows]

    async def list_versions(self, prompt_id: int) -> list[PromptVersionRow]:
        stmt = _VERSIONS.where(PromptVersion.prompt_id == prompt_id).order_by(PromptVersion.version)
        async with self._engine.connect() as conn:
            return [_version(row) for row in (await conn.execute(stmt)).all()]

    async def get_version(self, prompt_id: int, version: int) -> PromptVersionRow | None:
        stmt = _VERSIONS.where(PromptVersion.prompt_id == prompt_id, PromptVersion.version == version)
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return _version(row) if row else None

    async def version_by_id(self, version_id: int) -> PromptVersionRow | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_VERSIONS.where(PromptVersion.id == version_id))).first()
        return _version(row) if row else None

    async def activate(self, org_id: int, name: str, version: int) -> PromptRow:
        """Make ``version`` the one new conversations get (a split, if any, ends). Conversations already
        started keep theirs."""
        async with self._engine.begin() as conn:
            prompt = await self._existing(conn, org_id, name)
            if not 1 <= version <= prompt.latest_version:
                raise StoreError(
                    f"prompt {name!r} has no version {version} (latest: {prompt.latest_version})"
                )
            await self._activate(conn, prompt, version)
            found = await self._find(conn, org_id, name)
        assert found is not None
        return found

    async def rollback(self, org_id: int, name: str) -> PromptRow:
        """Activate the version that was active before the current one."""
        async with self._engine.begin() as conn:
            prompt = await self._existing(conn, org_id, name)
            if prompt.previous_version is None:
                raise StoreError(f"prompt {name!r} has no earlier active version to roll back to")
            await self._activate(conn, prompt, prompt.previous_version)
            found = await self._find(conn, org_id, name)
        assert found is not None
        return found

    async def set_split(self, org_id: int, name: str, weights: dict[int, float] | None) -> PromptRow:
        """Split new conversations between versions by weight ({version: weight}); None ends the split (new
        conversations get the active version again)."""
        async with self._engine.begin() as conn:
            prompt = await self._existing(conn, org_id, name)
            split = None
            if weights is not None:
                checked = check_split(weights, set(range(1, prompt.latest_version + 1)))
                split = {str(version): weight for version, weight in checked.items()}
            await conn.execute(
                update(Prompt).where(Prompt.id == prompt.id).values(split=split, updated_at=datetime.now(UTC))
            )
            found = await self._find(conn, org_id, name)
        assert found is not None
        return found

    async def _existing(self, conn: AsyncConnection, org_id: int, name: str) -> PromptRow:
        prompt = await self._find(conn, org_id, name)
        if prompt is None:
            raise PromptNotFoundError(f"no prompt named {name!r}")
        return prompt

    async def usage(self, prompt_id: int) -> list[VersionUsage]:
        """Per version: conversations, replies, failed calls, tokens and cost."""

        def total(column: Any) -> Any:
            return func.coalesce(func.sum(column), 0)

        stmt = (
            select(
                PromptVersion.version,
                func.count(distinct(Conversation.id)),
                total(case((ChatMessage.role == "assistant", 1), else_=0)),
                total(case((ChatMessage.status == "failed", 1), else_=0)),
                total(ChatMessage.input_tokens),
                total(ChatMessage.output_tokens),
                total(ChatMessage.cache_creation_input_tokens),
                total(ChatMessage.cache_read_input_tokens),
                total(ChatMessage.cost_usd),
            )
            .outerjoin(Conversation, Conversation.prompt_version_id == PromptVersion.id)
            .outerjoin(ChatMessage, ChatMessage.conversation_id == Conversation.id)
            .where(PromptVersion.prompt_id == prompt_id)
            .group_by(PromptVersion.version)
            .order_by(PromptVersion.version)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            VersionUsage(
                version=row[0],
                conversations=int(row[1]),
                replies=int(row[2]),
                failed=int(row[3]),
                input_tokens=int(row[4]),
                output_tokens=int(row[5]),
                cache_creation_input_tokens=int(row[6]),
                cache_read_input_tokens=int(row[7]),
                cost_usd=Decimal(str(row[8])),
            )
            for row in rows
        ]


class PromptNotFoundError(StoreError):
    """No prompt of that name in the organisation."""
