"""How a chat turn fails: errors for what the model's API answered (a reply's status, a stream's ``error``
event), the client that hung up, and the failure of a turn whose question is already stored."""

from __future__ import annotations

import orjson

from claudegate.errors import (
    ClaudegateError,
    RateLimitError,
    error_for_status,
)
from claudegate.flow.retry import retry_after_seconds
from claudegate.pipeline.sink import RawHeaders

__all__ = ["ClientClosedError", "TurnFailedError", "error_from_reply"]


class ClientClosedError(ClaudegateError):
    """The HTTP client hung up before its reply was complete (recorded on its message; nobody is told)."""

    status = 499
    error_type = "client_disconnected"

    def __init__(self) -> None:
        super().__init__("the client disconnected before the reply was complete")


class TurnFailedError(Exception):
    """A turn whose call failed after the user's message was stored (the failure is recorded). ``error`` is
    what to answer; ``chat_id`` the conversation."""

    def __init__(self, chat_id: str, error: ClaudegateError) -> None:
        super().__init__(error.message)
        self.chat_id = chat_id
        self.error = error


def error_from_reply(status: int, headers: RawHeaders, body: bytes) -> ClaudegateError:
    """The error an upstream error reply describes, to answer in Anthropic's envelope with its status."""
    message = f"the model's API answered {status}"
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        message = str(data["error"].get("message") or message)
    if status == 429:
        lookup = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in headers}
        return RateLimitError(message, retry_after=retry_after_seconds(lookup) or 1.0)
    return error_for_status(status, message)
