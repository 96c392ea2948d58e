"""The database schema as SQLAlchemy models.

The schema itself is created and changed only by the Alembic revisions in ``migrations/versions``; these
models describe it for queries (and for ``alembic revision --autogenerate`` when writing the next revision).
A test checks that the two never drift apart.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from claudegate.store._types import UTCDateTime

__all__ = [
    "ApiKey",
    "Base",
    "CallPayload",
    "ChatMessage",
    "Conversation",
    "MessageBatch",
    "Organization",
    "Prompt",
    "PromptVersion",
    "UploadedFile",
    "UsageDaily",
    "UsageRow",
    "User",
]

# Named constraints, so that later migrations (SQLite's batch mode in particular) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Tenant settings (revision 0002): null means no limit, and a weight of 1.
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer)
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    weight: Mapped[float | None] = mapped_column(Float)
    # Budgets (revision 0003): null means no cap.
    budget_daily_tokens: Mapped[int | None] = mapped_column(BigInteger)
    budget_monthly_tokens: Mapped[int | None] = mapped_column(BigInteger)
    budget_daily_usd: Mapped[Decimal | None] = mapped_column(Numeric(20, 6))
    budget_monthly_usd: Mapped[Decimal | None] = mapped_column(Numeric(20, 6))


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer)
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    weight: Mapped[float | None] = mapped_column(Float)
    budget_daily_tokens: Mapped[int | None] = mapped_column(BigInteger)
    budget_monthly_tokens: Mapped[int | None] = mapped_column(BigInteger)
    budget_daily_usd: Mapped[Decimal | None] = mapped_column(Numeric(20, 6))
    budget_monthly_usd: Mapped[Decimal | None] = mapped_column(Numeric(20, 6))


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        Index("ix_api_keys_key_hash", "key_hash", unique=True),
        Index("ix_api_keys_org_id", "org_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    key_prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer)
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    deadline_ms: Mapped[int | None] = mapped_column(Integer)  # default deadline of the key's calls
    priority: Mapped[int | None] = mapped_column(Integer)  # higher first; null counts as 0
    # Revision 0003: whether the key may act for its organisation's end users (x-user-id); null is false.
    act_for_users: Mapped[bool | None] = mapped_column(Boolean)
    # Revision 0011: whether the response cache answers the key's calls; null follows the organisation's.
    cache_replies: Mapped[bool | None] = mapped_column(Boolean)


class UsageRow(Base):
    """One call through the gateway. Append-only, and deliberately without foreign keys: a usage record must
    never be refused for a referential reason, and inserts stay cheap."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_org_id_created_at", "org_id", "created_at"),
        Index("ix_usage_records_created_at", "created_at"),
        Index("ix_usage_records_request_id", "request_id"),
        Index("ix_usage_records_upstream_request_id", "upstream_request_id"),
        Index("ix_usage_records_message_id", "message_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    request_id: Mapped[str] = mapped_column(String(64))
    upstream_request_id: Mapped[str | None] = mapped_column(String(128))
    org_id: Mapped[int | None] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(Integer)
    key_id: Mapped[int | None] = mapped_column(Integer)
    model: Mapped[str | None] = mapped_column(String(128))
    upstream: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    error_type: Mapped[str | None] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    output_tokens: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    cache_creation_input_tokens: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    cache_read_input_tokens: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    cache_creation_1h_input_tokens: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(20, 10))
    usage_details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    streamed: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    batch: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    api: Mapped[str] = mapped_column(String(16), server_default=text("'anthropic'"))
    # Attribution a client offers (Claude Code's session and agent ids), so spend can be reported by them.
    session_id: Mapped[str | None] = mapped_column(String(128))
    agent_id: Mapped[str | None] = mapped_column(String(128))
    parent_agent_id: Mapped[str | None] = mapped_column(String(128))
    # The model policy the call named (the model column says which model served), and its tool loop's id.
    policy: Mapped[str | None] = mapped_column(String(64), nullable=True)
    loop_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cached: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))  # answered from the cache
    message_id: Mapped[str | None] = mapped_column(String(128))
    # How the call went: {"admission_wait_ms": …, "attempts": [{"upstream", "status", "upstream_request_id",
    # "error_type", "began_ms", "first_byte_ms", "ms"}, …]}; None for calls that reached no upstream.
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class CallPayload(Base):
    """The request of a call, kept for ``claudegate calls show --curl`` when its organisation logs payloads;
    purged after the retention period. The headers are stored with every credential masked."""

    __tablename__ = "call_payloads"
    __table_args__ = (Index("ix_call_payloads_created_at", "created_at"),)

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    path: Mapped[str] = mapped_column(String(2048))
    headers: Mapped[list[Any]] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)


class UsageDaily(Base):
    """Daily totals of the usage records (revision 0011), per organisation and one of model, user or key:
    what reports over months read instead of the records. ``org_id`` 0 and ``value`` "" stand for none
    (a primary key has no NULLs). Kept by ``store/usage_daily.py`` in the transaction that adds records."""

    __tablename__ = "usage_daily"

    dimension: Mapped[str] = mapped_column(String(8), primary_key=True)  # model, user or key
    org_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    value: Mapped[str] = mapped_column(String(128), primary_key=True)  # the model, or the user's or key's id
    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_creation_input_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_read_input_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(20, 10))
    unpriced_requests: Mapped[int] = mapped_column(BigInteger)


class MessageBatch(Base):
    """Which organisation, user and key created an upstream message batch (the id is the upstream's)."""

    __tablename__ = "message_batches"
    __table_args__ = (Index("ix_message_batches_org_id_created_at_id", "org_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    user_id: Mapped[int | None] = mapped_column(Integer)
    key_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accounted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The upstream (by name) the batch lives on; NULL for batches recorded before it was kept: the preferred.
    upstream: Mapped[str | None] = mapped_column(String(128), nullable=True)


class UploadedFile(Base):
    """Which organisation, user and key uploaded a file through the Files API (the id is the upstream's)."""

    __tablename__ = "uploaded_files"
    __table_args__ = (Index("ix_uploaded_files_org_id_created_at_id", "org_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    user_id: Mapped[int | None] = mapped_column(Integer)
    key_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    upstream: Mapped[str | None] = mapped_column(String(128), nullable=True)


class Prompt(Base):
    """A named system prompt of an organisation. Which version new conversations get: the active one, or,
    with a split, one drawn by weight (``split``: {"version": weight}). ``previous_version`` is what a
    rollback goes back to."""

    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(128))
    active_version: Mapped[int | None] = mapped_column(Integer)
    previous_version: Mapped[int | None] = mapped_column(Integer)
    split: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PromptVersion(Base):
    """One numbered, immutable version of a prompt: its system text and optionally the model it is for."""

    __tablename__ = "prompt_versions"
    __table_args__ = (UniqueConstraint("prompt_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    version: Mapped[int] = mapped_column(Integer)
    system: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Conversation(Base):
    """A chat: whose it is (organisation, and user when a user's key or an end user made it), the prompt
    version it was given for good (sticky), and its default model. Deleting hides it and erases its messages'
    content; their token counts and costs stay for reports."""

    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_org_id_created_at_id", "org_id", "created_at", "id"),
        Index("ix_conversations_org_id_user_id_created_at", "org_id", "user_id", "created_at"),
        Index("ix_conversations_prompt_version_id", "prompt_version_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    key_id: Mapped[int | None] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(128))
    prompt_version_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_versions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Older turns compacted into a summary (by a cheaper model), and the last message it covers: the model is
    # sent the summary and the turns after that message.
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    summary_through: Mapped[str | None] = mapped_column(String(40), nullable=True)


class ChatMessage(Base):
    """One message of a chat. A user message is stored ``pending`` before its call and becomes ``ok`` in the
    transaction that stores the reply (``parent_id`` points from the reply to it), or ``failed`` with the
    error. ``tokens`` is the message's own size (for trimming history); the call's usage and cost are on the
    reply, or on the user message when the call failed."""

    __tablename__ = "chat_messages"
    __table_args__ = (
        Index("ix_chat_messages_conversation_id_created_at_id", "conversation_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    parent_id: Mapped[str | None] = mapped_column(String(40))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[list[Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    tokens: Mapped[int] = mapped_column(Integer)
    model: Mapped[str | None] = mapped_column(String(128))
    stop_reason: Mapped[str | None] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    output_tokens: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    cache_creation_input_tokens: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    cache_read_input_tokens: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(20, 10))
    error_type: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(1000))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
