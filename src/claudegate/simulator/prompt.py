"""What a request asks of the model: its input tokens, its cacheable prefix and the checks the API makes
beyond the shape of the body (tool pairing, cache breakpoints, images, limits of the model)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import imagesize
import orjson

from claudegate.errors import InvalidRequestError
from claudegate.simulator.files import StoredFile, file_not_found
from claudegate.wire.models import ModelInfo
from claudegate.wire.tokens import (
    MESSAGE_OVERHEAD_TOKENS,
    REQUEST_OVERHEAD_TOKENS,
    TOOLS_OVERHEAD_TOKENS,
    count_text_tokens,
    count_value_tokens,
)

__all__ = ["Breakpoint", "FileLookup", "Prompt", "analyse_prompt"]

# Finds an uploaded file by id, for ``{"source": {"type": "file", "file_id": ...}}`` blocks.
FileLookup = Callable[[str], StoredFile | None]

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_MAX_IMAGE_BYTES = 5 * 1024 * 1024
_MAX_IMAGE_SIDE = 8000
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
# Images are downscaled to fit these before they are costed (vision docs).
_RESIZE_LONG_EDGE = 1568
_RESIZE_PIXELS = 1_150_000
_UNKNOWN_IMAGE_TOKENS = 1590  # a URL or file image the simulator does not fetch: costed as 1092x1092
_PDF_PAGE_TOKENS = 1500
_MAX_BREAKPOINTS = 4
# Claude Code adds context to user turns in text blocks of this form; they name tools the user never asked
# for, so they are left out of what the turn is taken to ask.
_REMINDER = "<system-reminder>"


@dataclass(frozen=True, slots=True)
class Breakpoint:
    segment: int  # index of the last segment of the cached prefix
    ttl: str  # "5m" or "1h"


@dataclass(slots=True)
class Prompt:
    total_tokens: int
    segment_tokens: list[int] = field(default_factory=list)
    segment_digests: list[bytes] = field(default_factory=list)
    breakpoints: list[Breakpoint] = field(default_factory=list)
    last_user_text: str = ""
    last_user_has_tool_result: bool = False
    custom_tools: list[dict[str, Any]] = field(default_factory=list)

    def prefix_tokens(self, segment: int) -> int:
        return sum(self.segment_tokens[: segment + 1])


class _Builder:
    """Walks tools → system → messages (the API's prefix order), one segment per block."""

    def __init__(self, hashing: bool, files: FileLookup | None = None) -> None:
        self.hashing = hashing
        self.files = files
        self.tokens: list[int] = []
        self.digests: list[bytes] = []
        self.breakpoints: list[Breakpoint] = []
        self.cacheable: list[bool] = []
        self._chain = hashlib.blake2b(digest_size=16)

    def mix(self, value: Any) -> None:
        if self.hashing:
            self._chain.update(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))

    def add(self, block: Any, tokens: int, *, cacheable: bool = True) -> None:
        cache_control = block.get("cache_control") if isinstance(block, dict) else None
        if self.hashing:
            content = (
                {k: v for k, v in block.items() if k != "cache_control"} if isinstance(block, dict) else block
            )
            self.mix(content)
            self.digests.append(self._chain.copy().digest())
        self.tokens.append(tokens)
        self.cacheable.append(cacheable)
        if cache_control is not None:
            if not cacheable:
                raise InvalidRequestError("cache_control cannot be set on an empty text block.")
            self.breakpoints.append(Breakpoint(len(self.tokens) - 1, cache_control.get("ttl", "5m")))


def analyse_prompt(
    body: dict[str, Any],
    model: ModelInfo,
    *,
    max_tokens: int | None,
    may_cache: bool = True,
    files: FileLookup | None = None,
) -> Prompt:
    """Count the request's input tokens and find its cache breakpoints; raise 400 for what the API refuses.

    ``may_cache=False`` (the raw body never mentions cache_control) skips hashing the prefix. ``files``
    finds the uploads that file sources name (costed by their content); without it, none is known.
    """
    builder = _Builder(hashing=may_cache, files=files)
    messages: list[dict[str, Any]] = body["messages"]
    if not messages:
        raise InvalidRequestError("messages: at least one message is required")
    if max_tokens is not None and max_tokens > model.max_output_tokens:
        raise InvalidRequestError(
            f"max_tokens: {max_tokens} > {model.max_output_tokens}, which is the maximum allowed number of "
            f"output tokens for {model.id}"
        )
    _check_thinking(body.get("thinking"), max_tokens)

    custom_tools = _add_tools(builder, body.get("tools") or [], body.get("tool_choice"))
    _add_system(builder, body.get("system"))
    builder.mix(["messages", body.get("tool_choice"), _has_images(messages)])
    last_user_text, last_has_result = _add_messages(builder, messages)

    total = REQUEST_OVERHEAD_TOKENS + sum(builder.tokens)
    if total > model.context_window:
        raise InvalidRequestError(f"prompt is too long: {total} tokens > {model.context_window} maximum")
    breakpoints = _place_breakpoints(builder, body.get("cache_control"))
    return Prompt(
        total_tokens=total,
        segment_tokens=builder.tokens,
        segment_digests=builder.digests,
        breakpoints=breakpoints,
        last_user_text=last_user_text,
        last_user_has_tool_result=last_has_result,
        custom_tools=custom_tools,
    )


def _check_thinking(thinking: dict[str, Any] | None, max_tokens: int | None) -> None:
    if not thinking or thinking.get("type") != "enabled":
        return
    budget = thinking["budget_tokens"]
    if budget < 1024:
        raise InvalidRequestError(
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        )
    if max_tokens is not None and budget >= max_tokens:
        raise InvalidRequestError(
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
            "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"
        )


def _add_tools(
    builder: _Builder, tools: list[dict[str, Any]], tool_choice: dict[str, Any] | None
) -> list[dict[str, Any]]:
    custom: list[dict[str, Any]] = []
    names: set[str] = set()
    for index, tool in enumerate(tools):
        name = tool.get("name")
        if not isinstance(name, str):
            raise InvalidRequestError(f"tools.{index}.name: Field required")
        tool_type = tool.get("type")
        if tool_type in (None, "custom"):
            if not _TOOL_NAME.match(name):
                raise InvalidRequestError(
                    f"tools.{index}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
                )
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                raise InvalidRequestError(f"tools.{index}.custom.input_schema: Field required")
            if schema.get("type") != "object":
                raise InvalidRequestError(f"tools.{index}.custom.input_schema.type: Input should be 'object'")
            custom.append(tool)
        if name in names:
            raise InvalidRequestError("tools: Tool names must be unique.")
        names.add(name)
        builder.add(tool, count_value_tokens({k: v for k, v in tool.items() if k != "cache_control"}))
    if tools:
        builder.tokens[0] += TOOLS_OVERHEAD_TOKENS
    if tool_choice and tool_choice.get("type") == "tool" and tool_choice.get("name") not in names:
        raise InvalidRequestError(
            f"tool_choice.tool.name: Tool '{tool_choice.get('name')}' not found in tools"
        )
    if tool_choice and tool_choice.get("type") in ("any", "tool") and not tools:
        raise InvalidRequestError("tool_choice: tool_choice may only be specified while providing tools.")
    return custom


def _add_system(builder: _Builder, system: str | list[dict[str, Any]] | None) -> None:
    if system is None:
        return
    builder.mix("system")
    if isinstance(system, str):
        builder.add(system, count_text_tokens(system))
        return
    for block in system:
        text = block["text"]
        if not text:
            raise InvalidRequestError("system: text content blocks must be non-empty")
        builder.add(block, count_text_tokens(text))


def _has_images(messages: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(m["content"], list) and any(b.get("type") == "image" for b in m["content"])
        for m in messages
    )


def _add_messages(builder: _Builder, messages: list[dict[str, Any]]) -> tuple[str, bool]:
    pending_tool_uses: list[str] = []
    previous_tool_uses: set[str] = set()
    last_user_text = ""
    last_has_result = False
    for m_index, message in enumerate(messages):
        role = message["role"]
        content = message["content"]
        builder.mix(role)
        blocks: list[Any] = [content] if isinstance(content, str) else content
        if isinstance(content, str) and not content and m_index != len(messages) - 1:
            raise InvalidRequestError(f"messages.{m_index}: user messages must have non-empty content")
        result_ids: list[str] = []
        tool_use_ids: list[str] = []
        texts: list[str] = []
        for b_index, block in enumerate(blocks):
            where = f"messages.{m_index}.content.{b_index}"
            tokens = _block_tokens(block, where, builder.files)
            if b_index == 0:
                tokens += MESSAGE_OVERHEAD_TOKENS
            if isinstance(block, str):
                texts.append(block)
            elif block["type"] == "text" and not block["text"].startswith(_REMINDER):
                texts.append(block["text"])  # what the user asked (a client's reminders are not)
            elif block["type"] == "tool_result":
                result_ids.append(block["tool_use_id"])
            elif block["type"] == "tool_use":
                if role != "assistant":
                    raise InvalidRequestError(
                        f"{where}: tool_use blocks may only appear in assistant messages"
                    )
                tool_use_ids.append(block["id"])
            cacheable = not (
                isinstance(block, dict) and block.get("type") in ("thinking", "redacted_thinking")
            )
            builder.add(block, tokens, cacheable=cacheable)
        if role == "user":
            unexpected = [i for i in result_ids if i not in previous_tool_uses]
            if unexpected:
                raise InvalidRequestError(
                    f"messages.{m_index}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{unexpected[0]}. Each `tool_result` block must have a corresponding `tool_use` block "
                    "in the previous message."
                )
            missing = [i for i in pending_tool_uses if i not in result_ids]
            if missing:
                raise InvalidRequestError(
                    f"messages.{m_index}: `tool_use` ids were found without `tool_result` blocks immediately "
                    f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                    "`tool_result` block in the next message."
                )
            last_user_text = " ".join(texts)
            last_has_result = bool(result_ids)
            pending_tool_uses = []
            previous_tool_uses = set()
        elif role == "system":
            # A system message between turns (beta mid-conversation-system) instructs; it is no turn of
            # its own, so a tool call before it is still answered by the user turn after it.
            continue
        else:
            pending_tool_uses = tool_use_ids
            previous_tool_uses = set(tool_use_ids)
    return last_user_text, last_has_result


def _block_tokens(block: Any, where: str, files: FileLookup | None = None) -> int:
    if isinstance(block, str):
        return count_text_tokens(block)
    kind = block["type"]
    if kind == "text":
        if not block["text"]:
            raise InvalidRequestError("messages: text content blocks must be non-empty")
        return count_text_tokens(block["text"])
    if kind in ("image", "document") and block["source"]["type"] == "file":
        return _file_tokens(kind, block["source"]["file_id"], where, files)
    if kind == "image":
        return _image_tokens(block["source"], where)
    if kind == "document":
        return _document_tokens(block["source"], where, files)
    if kind == "tool_use":
        return count_text_tokens(block["name"]) + count_value_tokens(block["input"])
    if kind == "tool_result":
        content = block.get("content")
        if content is None:
            return 1
        if isinstance(content, str):
            return count_text_tokens(content)
        return sum(_block_tokens(item, where, files) for item in content)
    if kind == "thinking":
        return count_text_tokens(block["thinking"])
    return count_value_tokens(block)


def _image_tokens(source: dict[str, Any], where: str) -> int:
    if source["type"] != "base64":
        return _UNKNOWN_IMAGE_TOKENS
    media_type = source["media_type"]
    if media_type not in _IMAGE_TYPES:
        raise InvalidRequestError(
            f"{where}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or "
            "'image/webp'"
        )
    try:
        data = base64.b64decode(source["data"], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"{where}.source.base64.data: invalid base64 data") from None
    return _image_bytes_tokens(data, f"{where}.source.base64.data")


def _image_bytes_tokens(data: bytes, where: str) -> int:
    if len(data) > _MAX_IMAGE_BYTES:
        raise InvalidRequestError(
            f"{where}: image exceeds 5 MB maximum: {len(data)} bytes > {_MAX_IMAGE_BYTES} bytes"
        )
    size: tuple[int, int] = imagesize.get(io.BytesIO(data))
    width, height = size
    if width <= 0 or height <= 0:
        raise InvalidRequestError(f"{where}: Could not process image")
    if max(width, height) > _MAX_IMAGE_SIDE:
        raise InvalidRequestError(
            f"{where}: At least one of the image dimensions exceed max allowed size: {_MAX_IMAGE_SIDE} pixels"
        )
    scale = min(1.0, _RESIZE_LONG_EDGE / max(width, height), math.sqrt(_RESIZE_PIXELS / (width * height)))
    return max(1, math.ceil((width * scale) * (height * scale) / 750))


def _document_tokens(source: dict[str, Any], where: str, files: FileLookup | None = None) -> int:
    kind = source["type"]
    if kind == "text":
        return count_text_tokens(source["data"])
    if kind == "content":
        content = source["content"]
        if isinstance(content, str):
            return count_text_tokens(content)
        return sum(_block_tokens(item, where, files) for item in content)
    if kind == "base64":
        if source["media_type"] != "application/pdf":
            raise InvalidRequestError(f"{where}.source.base64.media_type: Input should be 'application/pdf'")
        try:
            data = base64.b64decode(source["data"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequestError(f"{where}.source.base64.data: invalid base64 data") from None
        return _pdf_tokens(data)
    return _PDF_PAGE_TOKENS


def _pdf_tokens(data: bytes) -> int:
    pages = max(1, data.count(b"/Type /Page") - data.count(b"/Type /Pages"))
    return pages * _PDF_PAGE_TOKENS


def _file_tokens(kind: str, file_id: str, where: str, files: FileLookup | None) -> int:
    """An uploaded file cited by id, costed by its content as the same bytes sent inline would be."""
    found = files(file_id) if files is not None else None
    if found is None:
        raise file_not_found(file_id)
    mime = found.mime_type
    if kind == "image":
        if mime not in _IMAGE_TYPES:
            raise InvalidRequestError(
                f"{where}.source.file: file {file_id} is {mime}, not an image (jpeg, png, gif or webp)"
            )
        return _image_bytes_tokens(found.data, f"{where}.source.file")
    if mime == "application/pdf":
        return _pdf_tokens(found.data)
    if mime.startswith("text/"):
        return count_text_tokens(found.data.decode("utf-8", errors="replace"))
    raise InvalidRequestError(
        f"{where}.source.file: file {file_id} is {mime}; a document must be a PDF or plain text"
    )


def _place_breakpoints(builder: _Builder, automatic: dict[str, Any] | None) -> list[Breakpoint]:
    breakpoints = list(builder.breakpoints)
    if automatic is not None:
        if len(breakpoints) >= _MAX_BREAKPOINTS:
            raise InvalidRequestError(
                "cache_control: automatic caching cannot be used when 4 blocks already have cache_control."
            )
        last = max((i for i, ok in enumerate(builder.cacheable) if ok), default=None)
        if last is not None and all(b.segment != last for b in breakpoints):
            breakpoints.append(Breakpoint(last, automatic.get("ttl", "5m")))
    if len(breakpoints) > _MAX_BREAKPOINTS:
        raise InvalidRequestError(
            f"A maximum of {_MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(breakpoints)}."
        )
    breakpoints.sort(key=lambda b: b.segment)
    seen_5m = False
    for breakpoint in breakpoints:
        if breakpoint.ttl == "5m":
            seen_5m = True
        elif seen_5m:
            raise InvalidRequestError(
                "cache_control: a ttl='1h' cache_control block must not come after a ttl='5m' cache_control "
                "block. Note that blocks are processed in the following order: `tools`, `system`, `messages`."
            )
    return breakpoints
