"""Chats, messages and prompts as the chat and admin APIs show them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from claudegate.store.chat_rows import ConversationRow, MessageRow, PromptRow, PromptVersionRow, VersionUsage
from claudegate.store.render import iso

__all__ = ["chat_json", "message_json", "prompt_json", "usd", "version_json", "version_usage_json"]


def usd(value: Decimal | None) -> str | None:
    """Dollars as an exact decimal string (as in Anthropic's cost reports); None when unpriced."""
    return None if value is None else format(value.normalize(), "f")


def chat_json(chat: ConversationRow) -> dict[str, Any]:
    return {
        "id": chat.id,
        "type": "chat",
        "title": chat.title,
        "model": chat.model,
        "prompt": (
            {"name": chat.prompt_name, "version": chat.prompt_version}
            if chat.prompt_name is not None
            else None
        ),
        "user": chat.user_name,
        "created_at": iso(chat.created_at),
        "updated_at": iso(chat.updated_at),
    }


def message_json(message: MessageRow) -> dict[str, Any]:
    return {
        "id": message.id,
        "type": "chat_message",
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "reply_to": message.parent_id,
        "model": message.model,
        "stop_reason": message.stop_reason,
        "tokens": message.tokens,
        "usage": {
            "input_tokens": message.input_tokens,
            "output_tokens": message.output_tokens,
            "cache_creation_input_tokens": message.cache_creation_input_tokens,
            "cache_read_input_tokens": message.cache_read_input_tokens,
        },
        "cost_usd": usd(message.cost_usd),
        "error": (
            {"type": message.error_type, "message": message.error_message}
            if message.error_type is not None
            else None
        ),
        "request_id": message.request_id,
        "created_at": iso(message.created_at),
        "completed_at": iso(message.completed_at),
    }


def prompt_json(prompt: PromptRow) -> dict[str, Any]:
    return {
        "name": prompt.name,
        "active_version": prompt.active_version,
        "previous_version": prompt.previous_version,
        "latest_version": prompt.latest_version,
        "split": {str(version): weight for version, weight in prompt.split.items()} if prompt.split else None,
        "created_at": iso(prompt.created_at),
        "updated_at": iso(prompt.updated_at),
    }


def version_json(version: PromptVersionRow, *, with_text: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": version.version,
        "model": version.model,
        "note": version.note,
        "created_at": iso(version.created_at),
    }
    if with_text:
        data["system"] = version.system
    return data


def version_usage_json(row: VersionUsage) -> dict[str, Any]:
    return {
        "version": row.version,
        "conversations": row.conversations,
        "replies": row.replies,
        "failed": row.failed,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cache_creation_input_tokens": row.cache_creation_input_tokens,
        "cache_read_input_tokens": row.cache_read_input_tokens,
        "cost_usd": usd(row.cost_usd),
    }
