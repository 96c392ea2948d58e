"""Reading usage from a reply without changing a byte of it.

Streams: ``message_start`` carries the input side and ``message_delta`` the cumulative totals; only those
events (and ``error``) are decoded. Content deltas are kept as raw bytes and decoded only if the stream ends
without a ``message_delta`` (the client hung up, or the upstream failed), to count what was produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from claudegate.wire.sse import SSEParser
from claudegate.wire.tokens import count_text_tokens

__all__ = ["Usage", "UsageTap", "usage_from_message"]


_TOKEN_FIELDS: Final = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)
_PLAIN_FIELDS: Final = frozenset({*_TOKEN_FIELDS, "cache_creation"})
# Usage fields read into attributes of their own; every other field is kept as it came in ``Usage.extra``.
_READ_FIELDS: Final = _PLAIN_FIELDS | {"speed", "inference_geo", "server_tool_use"}


@dataclass(slots=True)
class Usage:
    """Everything a reply's ``usage`` says, as the gateway costs and stores it.

    Token counts and the fields that change the price (``speed``, ``inference_geo``, the server-tool request
    counts) have attributes; any other field (``service_tier``, ``output_tokens_details``, fields added after
    this was written) is kept in ``extra``, so nothing the upstream reports is lost or an error.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    speed: str | None = None
    inference_geo: str | None = None
    # ``usage.server_tool_use``: tool name to requests made, e.g. {"web_search": 2} from web_search_requests.
    server_tool_requests: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_input_tokens(self) -> int:
        """Input as the API bills it: uncached, written to the cache and read from it."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def update(self, usage: dict[str, Any]) -> None:
        """Apply a usage object; absent or null fields keep their value (deltas are cumulative)."""
        for name in _TOKEN_FIELDS:
            value = usage.get(name)
            if isinstance(value, int):
                setattr(self, name, value)
        creation = usage.get("cache_creation")
        if isinstance(creation, dict) and isinstance(creation.get("ephemeral_1h_input_tokens"), int):
            self.cache_creation_1h_input_tokens = creation["ephemeral_1h_input_tokens"]
        if _PLAIN_FIELDS.issuperset(usage):
            return  # the common case, token counts only: nothing more to read
        speed, geo = usage.get("speed"), usage.get("inference_geo")
        if isinstance(speed, str):
            self.speed = speed
        if isinstance(geo, str):
            self.inference_geo = geo
        tools = usage.get("server_tool_use")
        if isinstance(tools, dict):
            for name, count in tools.items():
                if name.endswith("_requests") and isinstance(count, int) and not isinstance(count, bool):
                    self.server_tool_requests[name.removesuffix("_requests")] = count
        for name, value in usage.items():
            if name not in _READ_FIELDS and value is not None:
                self.extra[name] = value

    @classmethod
    def of(cls, usage: dict[str, Any]) -> Usage:
        """The usage a reply's ``usage`` object reports."""
        read = cls()
        read.update(usage)
        return read

    def api_json(self) -> dict[str, Any]:
        """The usage object as the API reports it (``Usage.of`` reads it back whole)."""
        found: dict[str, Any] = {name: getattr(self, name) for name in _TOKEN_FIELDS}
        if self.cache_creation_1h_input_tokens:
            found["cache_creation"] = {"ephemeral_1h_input_tokens": self.cache_creation_1h_input_tokens}
        return {**found, **(self.details() or {})}

    def plus(self, other: Usage) -> Usage:
        """A new usage: these token counts and another call's added (the pieces of one continued answer).
        New rather than changed in place: a call's usage record holds its usage as it was."""
        summed = Usage(speed=self.speed, inference_geo=self.inference_geo, extra=dict(self.extra))
        summed.server_tool_requests = dict(self.server_tool_requests)
        for name in (*_TOKEN_FIELDS, "cache_creation_1h_input_tokens"):
            setattr(summed, name, getattr(self, name) + getattr(other, name))
        return summed

    def details(self) -> dict[str, Any] | None:
        """What usage said beyond the token counts, for the usage record (None when nothing)."""
        found: dict[str, Any] = dict(self.extra)
        if self.speed is not None:
            found["speed"] = self.speed
        if self.inference_geo is not None:
            found["inference_geo"] = self.inference_geo
        if self.server_tool_requests:
            found["server_tool_use"] = {
                f"{name}_requests": n for name, n in self.server_tool_requests.items()
            }
        return found or None


def usage_from_message(body: bytes) -> tuple[Usage, str | None, str | None, str | None]:
    """Usage, model, error type and message id from a JSON reply (a Message or an error envelope)."""
    usage = Usage()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return usage, None, None, None
    if not isinstance(data, dict):
        return usage, None, None, None
    if data.get("type") == "error":
        error = data.get("error")
        return usage, None, error.get("type") if isinstance(error, dict) else "api_error", None
    if isinstance(data.get("usage"), dict):
        usage.update(data["usage"])
    model, message_id = data.get("model"), data.get("id")
    return (
        usage,
        model if isinstance(model, str) else None,
        None,
        message_id if isinstance(message_id, str) else None,
    )


_DELTA_FIELDS = ("text", "partial_json", "thinking")


class UsageTap:
    """Feed the stream's bytes as they pass; read usage, model and errors when it ends."""

    __slots__ = (
        "_deltas",
        "_final",
        "_parser",
        "completed",
        "error_type",
        "first_content",
        "message_id",
        "model",
        "usage",
    )

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._deltas: list[bytes] = []
        self._final = False
        self.usage = Usage()
        self.model: str | None = None
        self.message_id: str | None = None
        self.error_type: str | None = None
        self.completed = False  # message_stop seen
        self.first_content = False  # a content delta seen (time to first token)

    def feed(self, chunk: bytes) -> None:
        for name, data in self._parser.feed_fields(chunk):
            if name == "content_block_delta":
                self.first_content = True
                if not self._final:
                    self._deltas.append(data)
            elif name == "message_start":
                message = orjson.loads(data).get("message", {})
                self.model = message.get("model")
                self.message_id = message.get("id")
                self.usage.update(message.get("usage") or {})
            elif name == "message_delta":
                self.usage.update(orjson.loads(data).get("usage") or {})
                self._final = True
                self._deltas.clear()
            elif name == "message_stop":
                self.completed = True
            elif name == "error":
                error = orjson.loads(data).get("error") or {}
                self.error_type = error.get("type", "api_error")

    def finish(self) -> Usage:
        """The usage to record: the reported totals, or an estimate of what was sent if none were reported."""
        if not self._final and self._deltas:
            produced = 0
            for data in self._deltas:
                delta = orjson.loads(data).get("delta", {})
                for field in _DELTA_FIELDS:
                    value = delta.get(field)
                    if isinstance(value, str):
                        produced += count_text_tokens(value)
            self.usage.output_tokens = max(self.usage.output_tokens, produced)
            self._deltas.clear()
        return self.usage
