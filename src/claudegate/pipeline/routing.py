"""What a call says about its own routing: its deadline and its stickiness key."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

import orjson

from claudegate.keys import Identity
from claudegate.pipeline.sink import RawHeaders

__all__ = ["CONVERSATION_HEADER", "DEADLINE_HEADER", "deadline_for", "sticky_key"]

DEADLINE_HEADER = b"x-claudegate-deadline-ms"
CONVERSATION_HEADER = b"x-claudegate-conversation"


def deadline_for(identity: Identity, requested_s: float | None, default_s: float) -> float:
    """The latest acceptable start of a call, on ``time.monotonic()``: the call's own deadline, else its
    key's default deadline, else the gateway's ``default_deadline_s``."""
    if requested_s is None:
        default_ms = identity.settings.deadline_ms
        requested_s = default_ms / 1000 if default_ms is not None else default_s
    return time.monotonic() + requested_s


def sticky_key(mode: str, headers: RawHeaders, body: Mapping[str, Any]) -> str | None:
    """The key that keeps related calls on one upstream, so its prompt cache keeps hitting.

    ``conversation``: the x-claudegate-conversation header, else ``metadata.user_id``. ``prefix``: a digest of
    the model, system prompt and tools, which every turn of a conversation repeats byte for byte.
    """
    if mode == "conversation":
        value = next((v for name, v in headers if name == CONVERSATION_HEADER), None)
        if value is not None:
            return value.decode("latin-1")
        metadata = body.get("metadata")
        user = metadata.get("user_id") if isinstance(metadata, dict) else None
        return user if isinstance(user, str) else None
    if mode == "prefix":
        prefix = orjson.dumps([body.get("model"), body.get("system"), body.get("tools")])
        return hashlib.blake2b(prefix, digest_size=12).hexdigest()
    return None
