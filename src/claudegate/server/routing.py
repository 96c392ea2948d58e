"""What a gateway call says about its own routing: its deadline header and its stickiness key."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from starlette.types import Scope

from claudegate.server.asgi import header

__all__ = ["CONVERSATION_HEADER", "DEADLINE_HEADER", "sticky_key"]

DEADLINE_HEADER = b"x-claudegate-deadline-ms"
CONVERSATION_HEADER = b"x-claudegate-conversation"


def sticky_key(mode: str, scope: Scope, body: dict[str, Any]) -> str | None:
    """The key that keeps related calls on one upstream, so its prompt cache keeps hitting.

    ``conversation``: the x-claudegate-conversation header, else ``metadata.user_id``. ``prefix``: a digest of
    the model, system prompt and tools, which every turn of a conversation repeats byte for byte.
    """
    if mode == "conversation":
        value = header(scope, CONVERSATION_HEADER)
        if value is not None:
            return value.decode("latin-1")
        metadata = body.get("metadata")
        user = metadata.get("user_id") if isinstance(metadata, dict) else None
        return user if isinstance(user, str) else None
    if mode == "prefix":
        prefix = orjson.dumps([body.get("model"), body.get("system"), body.get("tools")])
        return hashlib.blake2b(prefix, digest_size=12).hexdigest()
    return None
