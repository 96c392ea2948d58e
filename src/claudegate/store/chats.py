"""Conversations and their messages.

A turn is written in two transactions: the user's message (and, for a new chat, the conversation) before the
call, as ``pending``; then either the reply together with the user's message turned ``ok``, or the user's
message turned ``failed`` with the error. A reply is never stored without its question being ``ok``, and
history is built only from ``ok`` pairs, so a failed or interrupted call leaves nothing half-written in what
the model will see next.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from claudegate.store.api_keys import budget_caps
from claudegate.store.chat_rows import (
    ChatOwner,
    ConversationRow,
    EndUser,
    MessageRow,
    NewConversation,
    NewMessage,
    Page,
    ReplyUsage,
)
from claudegate.store.rows import check_name
from claudegate.store.settings import limit_set
from claudegate.store.tables import ChatMessage, Conversation, Prompt, PromptVersion, User

__all__ = ["ChatRepository"]

_MAX_ERROR = 1000

_CONVERSATIONS = (
    select(
        Conversation.id,
        Conversation.org_id,
        Conversation.user_id,
        User.name,
        Conversation.key_id,
        Conversation.title,
        Conversation.model,
        Conversation.prompt_version_id,
        Prompt.name,
        PromptVersion.version,
        Conversation.created_at,
        Conversation.updated_at,
    )
    .outerjoin(User, User.id == Conversation.user_id)
    .outerjoin(PromptVersion, PromptVersion.id == Conversation.prompt_version_id)
    .outerjoin(Prompt, Prompt.id == PromptVersion.prompt_id)
)

_MESSAGE_COLUMNS = (
    ChatMessage.id,
    ChatMessage.conversation_id,
    ChatMessage.parent_id,
    ChatMessage.role,
    ChatMessage.content,
    ChatMessage.status,
    ChatMessage.tokens,
    ChatMessage.model,
    ChatMessage.stop_reason,
    ChatMessage.input_tokens,
    ChatMessage.output_tokens,
    ChatMessage.cache_creation_input_tokens,
    ChatMessage.cache_read_input_tokens,
    ChatMessage.cost_usd,
    ChatMessage.error_type,
    ChatMessage.error_message,
    ChatMessage.request_id,
    ChatMessage.created_at,
    ChatMessage.completed_at,
)

_END_USER = (
    User.id,
    User.name,
    User.requests_per_minute,
    User.tokens_per_minute,
    User.max_concurrency,
    User.weight,
    User.budget_daily_tokens,
    User.budget_monthly_tokens,
    User.budget_daily_usd,
    User.budget_monthly_usd,
)


def _conversation(row: Any) -> ConversationRow:
    return ConversationRow(*row)


def _message(row: Any) -> MessageRow:
    return MessageRow(*row)


def _visible(owner: ChatOwner) -> list[ColumnElement[bool]]:
    conditions = [Conversation.org_id == owner.org_id, Conversation.deleted_at.is_(None)]
    if owner.user_id is not None:
        conditions.append(Conversation.user_id == owner.user_id)
    return conditions


def _usage_values(usage: ReplyUsage) -> dict[str, Any]:
    tokens = usage.tokens
    return {
        "input_tokens": tokens.input_tokens,
        "output_tokens": tokens.output_tokens,
        "cache_creation_input_tokens": tokens.cache_creation_input_tokens,
        "cache_read_input_tokens": tokens.cache_read_input_tokens,
        "cost_usd": usage.cost_usd,
        "request_id": usage.request_id,
    }


async def keyset_page(
    conn: AsyncConnection,
    stmt: Any,
    *,
    created: Any,
    ident: Any,
    limit: int,
    after_id: str | None,
    before_id: str | None,
    newest_first: bool,
) -> tuple[list[Any], bool]:
    """A page of ``stmt``'s rows in (created, id) order, paginated like Anthropic's lists: ``after_id`` gives
    the page that follows that item in list order, ``before_id`` the page that precedes it. A cursor that
    ``stmt`` does not select (another owner's, or gone) gives an empty page."""
    position = tuple_(created, ident)
    cursor_id = before_id if before_id is not None else after_id
    forward_order = (created.desc(), ident.desc()) if newest_first else (created, ident)
    backward_order = (created, ident) if newest_first else (created.desc(), ident.desc())
    order = forward_order
    if cursor_id is not None:
        found = (await conn.execute(stmt.with_only_columns(created, ident).where(ident == cursor_id))).first()
        if found is None:
            return [], False
        cursor = tuple(found)
        after = position < cursor if newest_first else position > cursor
        before = position > cursor if newest_first else position < cursor
        if before_id is not None:
            stmt, order = stmt.where(before), backward_order
        else:
            stmt = stmt.where(after)
    rows = list((await conn.execute(stmt.order_by(*order).limit(limit + 1))).all())
    has_more = len(rows) > limit
    rows = rows[:limit]
    if before_id is not None:
        rows.reverse()
    return rows, has_more


class ChatRepository:
    __slots__ = ("_engine",)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- who ----------------------------------------------------------------------------------------------

    async def end_user(self, org_id: int, name: str) -> EndUser:
        """The organisation's user so named, created on first use (an end user of a chat product), with the
        limits and budget set on it. InvalidNameError for a name that is not a slug."""
        check_name("user", name)
        stmt = select(*_END_USER).where(User.org_id == org_id, User.name == name)
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(
                        insert(User).values(org_id=org_id, name=name, created_at=datetime.now(UTC))
                    )
            except IntegrityError:
                pass  # created at the same moment by another call: the row below is the one to use
            async with self._engine.connect() as conn:
                row = (await conn.execute(stmt)).one()
        return EndUser(
            id=row[0],
            name=row[1],
            limits=limit_set(row[2], row[3], row[4]),
            weight=row[5],
            budget=budget_caps(row[6], row[7], row[8], row[9]),
        )

    # -- turns --------------------------------------------------------------------------------------------

    async def start_turn(
        self, *, chat_id: str, new_chat: NewConversation | None, message: NewMessage, request_id: str
    ) -> datetime:
        """Store the user's message as ``pending`` (and the new conversation with it, in one transaction);
        returns when it was stored."""
        now = message.created_at or datetime.now(UTC)
        async with self._engine.begin() as conn:
            if new_chat is not None:
                await conn.execute(
                    insert(Conversation).values(
                        id=new_chat.id,
                        org_id=new_chat.org_id,
                        user_id=new_chat.user_id,
                        key_id=new_chat.key_id,
                        title=new_chat.title,
                        model=new_chat.model,
                        prompt_version_id=new_chat.prompt_version_id,
                        created_at=now,
                        updated_at=now,
                    )
                )
            else:
                await conn.execute(
                    update(Conversation).where(Conversation.id == chat_id).values(updated_at=now)
                )
            await conn.execute(
                insert(ChatMessage).values(
                    id=message.id,
                    conversation_id=chat_id,
                    role=message.role,
                    content=message.content,
                    status="pending",
                    tokens=message.tokens,
                    model=message.model,
                    request_id=request_id,
                    created_at=now,
                )
            )
        return now

    async def complete_turn(
        self,
        *,
        chat_id: str,
        question_id: str,
        reply: NewMessage,
        stop_reason: str | None,
        usage: ReplyUsage,
    ) -> datetime:
        """Store the reply and mark its question ``ok``, in one transaction; returns when."""
        now = datetime.now(UTC)
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(ChatMessage).values(
                    id=reply.id,
                    conversation_id=chat_id,
                    parent_id=question_id,
                    role="assistant",
                    content=reply.content,
                    status="ok",
                    tokens=reply.tokens,
                    model=usage.model or reply.model,
                    stop_reason=stop_reason,
                    created_at=now,
                    completed_at=now,
                    **_usage_values(usage),
                )
            )
            await conn.execute(
                update(ChatMessage).where(ChatMessage.id == question_id).values(status="ok", completed_at=now)
            )
            await conn.execute(update(Conversation).where(Conversation.id == chat_id).values(updated_at=now))
        return now

    async def fail_turn(
        self, *, question_id: str, error_type: str, error_message: str, usage: ReplyUsage
    ) -> None:
        """Mark the user's message ``failed`` with the error and whatever the failed call used."""
        values = _usage_values(usage)
        if usage.request_id is None:
            del values["request_id"]
        async with self._engine.begin() as conn:
            await conn.execute(
                update(ChatMessage)
                .where(ChatMessage.id == question_id)
                .values(
                    status="failed",
                    error_type=error_type,
                    error_message=error_message[:_MAX_ERROR],
                    completed_at=datetime.now(UTC),
                    **values,
                )
            )

    # -- reading ------------------------------------------------------------------------------------------

    async def get_conversation(self, owner: ChatOwner, chat_id: str) -> ConversationRow | None:
        """The conversation if ``owner`` may see it (not deleted, theirs); None otherwise."""
        stmt = _CONVERSATIONS.where(Conversation.id == chat_id, *_visible(owner))
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return _conversation(row) if row else None

    async def list_conversations(
        self, owner: ChatOwner, *, limit: int, after_id: str | None = None, before_id: str | None = None
    ) -> Page[ConversationRow]:
        """The owner's conversations, newest first."""
        stmt = _CONVERSATIONS.where(*_visible(owner))
        async with self._engine.connect() as conn:
            rows, has_more = await keyset_page(
                conn,
                stmt,
                created=Conversation.created_at,
                ident=Conversation.id,
                limit=limit,
                after_id=after_id,
                before_id=before_id,
                newest_first=True,
            )
        items = [_conversation(row) for row in rows]
        return Page(items=items, has_more=has_more, ids=[item.id for item in items])

    async def list_messages(
        self, chat_id: str, *, limit: int, after_id: str | None = None, before_id: str | None = None
    ) -> Page[MessageRow]:
        """A conversation's messages in the order they were written, failed and pending ones included."""
        stmt = select(*_MESSAGE_COLUMNS).where(ChatMessage.conversation_id == chat_id)
        async with self._engine.connect() as conn:
            rows, has_more = await keyset_page(
                conn,
                stmt,
                created=ChatMessage.created_at,
                ident=ChatMessage.id,
                limit=limit,
                after_id=after_id,
                before_id=before_id,
                newest_first=False,
            )
        items = [_message(row) for row in rows]
        return Page(items=items, has_more=has_more, ids=[item.id for item in items])

    async def history(self, chat_id: str) -> list[MessageRow]:
        """The conversation's completed turns, each question followed by its reply, in the order the
        questions were asked (two questions sent at once may have had their replies stored the other way)."""
        stmt = (
            select(*_MESSAGE_COLUMNS)
            .where(ChatMessage.conversation_id == chat_id, ChatMessage.status == "ok")
            .order_by(ChatMessage.created_at, ChatMessage.id)
        )
        async with self._engine.connect() as conn:
            rows = [_message(row) for row in (await conn.execute(stmt)).all()]
        return pair_turns(rows)

    async def summary(self, chat_id: str) -> tuple[str, str] | None:
        """The conversation's summary of its older turns and the id of the last message it covers."""
        stmt = select(Conversation.summary, Conversation.summary_through).where(Conversation.id == chat_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None or row[0] is None or row[1] is None:
            return None
        return row[0], row[1]

    async def set_summary(self, chat_id: str, summary: str, through: str) -> None:
        """Keep ``summary`` as the conversation's summary of its messages up to ``through``."""
        stmt = (
            update(Conversation)
            .where(Conversation.id == chat_id)
            .values(summary=summary, summary_through=through)
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)

    # -- deleting -----------------------------------------------------------------------------------------

    async def delete_conversation(self, owner: ChatOwner, chat_id: str) -> bool:
        """Hide the conversation for good and erase its messages' content (their token counts and costs stay
        for usage reports). False if the owner cannot see it."""
        now = datetime.now(UTC)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(Conversation)
                .where(Conversation.id == chat_id, *_visible(owner))
                .values(deleted_at=now, title="", summary=None, summary_through=None)
            )
            if result.rowcount == 0:
                return False
            await conn.execute(
                update(ChatMessage)
                .where(ChatMessage.conversation_id == chat_id)
                .values(content=[], error_message=None)
            )
        return True


def pair_turns(rows: Sequence[MessageRow]) -> list[MessageRow]:
    """Questions in order, each followed by its reply; a question without a stored reply is left out."""
    replies = {row.parent_id: row for row in rows if row.role == "assistant" and row.parent_id is not None}
    turns: list[MessageRow] = []
    for row in rows:
        if row.role == "user":
            reply = replies.get(row.id)
            if reply is not None:
                turns.extend((row, reply))
    return turns
