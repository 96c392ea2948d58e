"""A streamed reply folded into the Message it describes, on the stream's own JSON values: the one fold the
chat API (``chat.sink``) and the in-process client's stream helper (``client._streams``, which types the
result as the SDK's ``Message`` only when asked) share.

The rules follow Anthropic's stream and the official SDK's accumulator:

- ``message_start`` carries the message with empty content: it becomes the snapshot.
- ``content_block_start`` appends its block at ``index``; deltas extend the block at ``index``: text,
  thinking and citations are appended, a signature replaces the block's, and the partial JSON of a tool's
  input is concatenated and parsed (partially, so the snapshot shows the input as it grows).
- ``message_delta`` sets the stop reason, stop sequence and stop details, and any other field it carries;
  its usage counts are cumulative totals, so they replace the snapshot's; a count it leaves out (null) keeps
  the value ``message_start`` gave.
- ``message_stop`` completes the message, unless an ``error`` event came; ``content_block_stop``, ``ping``
  and unknown events change nothing.

The gateway's own relay does not fold: it reads usage with ``wire.usage_tap.UsageTap``, which decodes only
``message_start``, ``message_delta`` and ``error`` and keeps content deltas as bytes. Relaying is the hot path
(half a millisecond of CPU a call), and folding every delta into a message it never needs would cost more
than the relay itself.
"""

from __future__ import annotations

from typing import Any, Final

import jiter

__all__ = ["MessageFold"]

# Fields of a message_delta's ``delta`` that describe how the message stopped: set even when null, since
# null is their answer. Others (``container``) are set only when given.
_STOP_FIELDS: Final = frozenset({"stop_reason", "stop_sequence", "stop_details"})
_TOOL_BLOCKS: Final = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


class MessageFold:
    """Feed a stream's events (each one's JSON ``data``, parsed); read the message so far.

    ``message``: the snapshot (None before ``message_start``), updated in place. ``completed``:
    ``message_stop`` arrived and no ``error`` did. ``error``: the type and message of an ``error`` event.
    """

    __slots__ = ("_json", "completed", "error", "message")

    def __init__(self) -> None:
        self.message: dict[str, Any] | None = None
        self.completed = False
        self.error: tuple[str, str] | None = None
        self._json: dict[int, str] = {}  # the partial JSON of each tool block's input so far, by index

    @property
    def content(self) -> list[dict[str, Any]]:
        return self.message["content"] if self.message is not None else []

    @property
    def stop_reason(self) -> str | None:
        return self.message.get("stop_reason") if self.message is not None else None

    @property
    def model(self) -> str | None:
        return self.message.get("model") if self.message is not None else None

    def feed(self, event: dict[str, Any]) -> str | None:
        """Fold one event in; returns the text it adds to a text block, if any. Raises RuntimeError for an
        event before ``message_start``, and ValueError when a tool's input is not valid JSON."""
        kind = event.get("type")
        if kind == "message_start":
            self._start(event.get("message") or {})
            return None
        if kind == "error":
            error = event.get("error") or {}
            self.error = (str(error.get("type", "api_error")), str(error.get("message", "")))
            self.completed = False
            return None
        if kind not in ("content_block_start", "content_block_delta", "message_delta", "message_stop"):
            return None  # ping, content_block_stop, or an event newer than this fold
        message = self.message
        if message is None:
            raise RuntimeError(f"unexpected event order: {kind} before message_start")
        if kind == "content_block_delta":
            return self._delta(message["content"], int(event.get("index", -1)), event.get("delta") or {})
        if kind == "content_block_start":
            block = dict(event.get("content_block") or {})
            if block.get("type") in _TOOL_BLOCKS:
                block.setdefault("input", {})
            message["content"].append(block)
        elif kind == "message_delta":
            for name, value in (event.get("delta") or {}).items():
                if value is not None or name in _STOP_FIELDS:
                    message[name] = value
            usage = message["usage"]
            for name, value in (event.get("usage") or {}).items():
                if value is not None:
                    usage[name] = value
        else:  # message_stop
            self.completed = self.error is None
        return None

    def _start(self, message: dict[str, Any]) -> None:
        # Copies of the containers the fold changes, so the event it was given stays as it came.
        self.message = {
            **message,
            "content": list(message.get("content") or []),
            "usage": dict(message.get("usage") or {}),
        }
        self._json.clear()

    def _delta(self, content: list[dict[str, Any]], index: int, delta: dict[str, Any]) -> str | None:
        if not 0 <= index < len(content):
            return None
        block = content[index]
        kind, block_type = delta.get("type"), block.get("type")
        if kind == "text_delta":
            if block_type == "text":
                text = str(delta.get("text", ""))
                block["text"] = block.get("text", "") + text
                return text
        elif kind == "input_json_delta":
            if block_type in _TOOL_BLOCKS:
                buffer = self._json.get(index, "") + str(delta.get("partial_json", ""))
                self._json[index] = buffer
                if buffer:
                    block["input"] = _partial_json(buffer, index)
        elif kind == "citations_delta":
            if block_type == "text":
                citations = block.get("citations")
                if isinstance(citations, list) and citations:
                    citations.append(delta.get("citation"))
                else:
                    block["citations"] = [delta.get("citation")]
        elif kind == "thinking_delta":
            if block_type == "thinking":
                block["thinking"] = block.get("thinking", "") + str(delta.get("thinking", ""))
        elif kind == "signature_delta" and block_type == "thinking":
            block["signature"] = delta.get("signature", "")
        return None


def _partial_json(buffer: str, index: int) -> Any:
    """A tool's input as far as it has come: a key whose value has not begun, or whose string is not closed
    yet, is left out until it is (as the SDK parses it)."""
    try:
        return jiter.from_json(buffer.encode(), partial_mode=True)
    except ValueError as error:
        raise ValueError(
            f"the tool input streamed for block {index} is not valid JSON ({error}): {buffer}"
        ) from None
