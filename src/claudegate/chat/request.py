"""A chat call's request (``{message, chat_id?, prompt?, model?, max_tokens?}``) and who makes it: the key's
identity, or that of an end user the key acts for (``x-user-id``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final

from claudegate.errors import InvalidRequestError, PermissionDeniedError
from claudegate.keys import Identity
from claudegate.store import Store
from claudegate.store.chat_rows import ChatOwner

__all__ = ["Caller", "ChatRequest", "caller_for"]

_MAX_CONTINUATIONS = 10
_MAX_MESSAGE_BLOCKS: Final = 100


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """``POST /chat`` and ``/chat/stream``: ``{message, chat_id?, prompt?, prompt_version?, model?,
    max_tokens?}``. ``prompt_version`` pins a new chat to that version of its prompt (to try one before
    activating it) instead of the active one or the split's draw."""

    content: list[dict[str, Any]]
    chat_id: str | None = None
    prompt: str | None = None
    model: str | None = None
    max_tokens: int | None = None
    max_continuations: int | None = None
    prompt_version: int | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ChatRequest:
        """Check a request body; InvalidRequestError names the field to fix."""
        known = {"message", "chat_id", "prompt", "prompt_version", "model", "max_tokens", "max_continuations"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise InvalidRequestError(
                f"{unknown[0]}: Extra inputs are not permitted (use {', '.join(sorted(known))})"
            )
        message = body.get("message")
        if isinstance(message, str):
            if not message.strip():
                raise InvalidRequestError("message: must not be empty")
            content: list[dict[str, Any]] = [{"type": "text", "text": message}]
        elif isinstance(message, list) and message:
            if len(message) > _MAX_MESSAGE_BLOCKS or not all(
                isinstance(block, dict) and isinstance(block.get("type"), str) for block in message
            ):
                raise InvalidRequestError(
                    f"message: a string, or a list of 1 to {_MAX_MESSAGE_BLOCKS} content blocks "
                    '({"type": "text", "text": …}, images, documents)'
                )
            content = [dict(block) for block in message]
        else:
            raise InvalidRequestError("message: field required (a string, or a list of content blocks)")
        fields: dict[str, Any] = {}
        for name in ("chat_id", "prompt", "model"):
            value = body.get(name)
            if value is not None and (not isinstance(value, str) or not value or len(value) > 128):
                raise InvalidRequestError(f"{name}: must be a string of 1 to 128 characters")
            fields[name] = value
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise InvalidRequestError("max_tokens: must be a whole number of at least 1")
        continuations = body.get("max_continuations")
        if continuations is not None and (
            isinstance(continuations, bool)
            or not isinstance(continuations, int)
            or not 0 <= continuations <= _MAX_CONTINUATIONS
        ):
            raise InvalidRequestError(
                f"max_continuations: must be a whole number from 0 to {_MAX_CONTINUATIONS}"
            )
        version = body.get("prompt_version")
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise InvalidRequestError("prompt_version: must be a version number (1 or more)")
            if fields["prompt"] is None:
                raise InvalidRequestError("prompt_version: name the prompt with prompt as well")
            if fields["chat_id"] is not None:
                raise InvalidRequestError("prompt_version: only a new chat can pick its prompt's version")
        return cls(
            content=content,
            max_tokens=max_tokens,
            max_continuations=continuations,
            prompt_version=version,
            **fields,
        )


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes a chat call: the identity the pipeline sees (an end user's, when the key acts for one) and
    whose chats they may see."""

    identity: Identity
    owner: ChatOwner


async def caller_for(store: Store, identity: Identity, end_user: str | None) -> Caller:
    """The caller for a key's identity, acting for ``end_user`` (``x-user-id``) if given and allowed."""
    if end_user is None:
        return Caller(identity, ChatOwner(identity.org_id, identity.user_id))
    if not identity.can_act_for_users:
        raise PermissionDeniedError(
            "x-user-id: this key may not act for end users; allow it with "
            "`claudegate keys limits KEY_ID --act-for-users yes` (admin API: act_for_users)"
        )
    user = await store.chats.end_user(identity.org_id, end_user)
    settings = replace(
        identity.settings,
        user=user.limits,
        user_weight=1.0 if user.weight is None else user.weight,
        user_budget=user.budget,
    )
    acting = replace(identity, user_id=user.id, user_name=user.name, settings=settings)
    return Caller(acting, ChatOwner(identity.org_id, user.id))
