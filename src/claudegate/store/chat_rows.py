"""What the chat, prompt and budget repositories return: plain frozen values, detached from any session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from claudegate.keys import BudgetCaps, LimitSet
from claudegate.wire.usage_tap import Usage

__all__ = [
    "ChatOwner",
    "ConversationRow",
    "EndUser",
    "MessageRow",
    "NewConversation",
    "NewMessage",
    "Page",
    "PromptRow",
    "PromptVersionRow",
    "ReplyUsage",
    "VersionUsage",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ChatOwner:
    """Whose chats a caller may see: an organisation's, and only one user's when ``user_id`` is set (a user's
    key, or a key acting for an end user). An organisation's own key (``user_id`` None) sees them all."""

    org_id: int
    user_id: int | None


@dataclass(frozen=True, slots=True)
class EndUser:
    """A user of an organisation that a key acts for, with the settings that apply to the user."""

    id: int
    name: str
    limits: LimitSet
    weight: float | None
    budget: BudgetCaps


@dataclass(frozen=True, slots=True)
class ConversationRow:
    id: str
    org_id: int
    user_id: int | None
    user_name: str | None
    key_id: int | None
    title: str
    model: str
    prompt_version_id: int | None
    prompt_name: str | None
    prompt_version: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: str
    conversation_id: str
    parent_id: str | None
    role: str  # "user" or "assistant"
    content: list[Any]  # content blocks, as sent to the model
    status: str  # "pending", "ok" or "failed"
    tokens: int  # the message's own size, counted locally
    model: str | None
    stop_reason: str | None
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_usd: Decimal | None
    error_type: str | None
    error_message: str | None
    request_id: str | None
    created_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewConversation:
    """A conversation to create with its first message."""

    id: str
    org_id: int
    title: str
    model: str
    prompt_version_id: int | None
    user_id: int | None
    key_id: int | None


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store: the user's (before its call) or the model's reply (after it)."""

    id: str
    role: str
    content: list[Any]
    tokens: int
    model: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReplyUsage:
    """What a call reported and cost, stored with its reply or, when it failed, with the user's message."""

    tokens: Usage = field(default_factory=Usage)  # what the reply's usage reported
    cost_usd: Decimal | None = None
    model: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list, with Anthropic's pagination fields (the ids of its first and last items)."""

    items: list[T]
    has_more: bool
    ids: list[str] = field(default_factory=list)

    @property
    def first_id(self) -> str | None:
        return self.ids[0] if self.ids else None

    @property
    def last_id(self) -> str | None:
        return self.ids[-1] if self.ids else None


@dataclass(frozen=True, slots=True)
class PromptRow:
    """A named prompt: which version new conversations get (``active_version``, or a draw by weight from
    ``split`` {version: weight} when set) and what a rollback returns to (``previous_version``)."""

    id: int
    org_id: int
    name: str
    active_version: int | None
    previous_version: int | None
    split: dict[int, float] | None
    latest_version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PromptVersionRow:
    id: int
    prompt_id: int
    version: int
    system: str
    model: str | None
    note: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class VersionUsage:
    """What the conversations given one prompt version used: replies, failed calls, tokens and cost."""

    version: int
    conversations: int
    replies: int
    failed: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_usd: Decimal
