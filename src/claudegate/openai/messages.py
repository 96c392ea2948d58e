"""OpenAI chat messages as Anthropic's ``system`` and ``messages``.

- ``system`` and ``developer`` messages, wherever they stand, become the system prompt's text blocks, in
  order (Claude has one system prompt, before the conversation);
- ``user`` content: text, images (``image_url``: a ``data:`` URL becomes a base64 source, an http(s) URL a
  ``url`` source) and PDF files sent inline (``file.file_data``);
- ``assistant`` content and ``tool_calls`` become text and ``tool_use`` blocks (``arguments`` is parsed:
  Claude takes tool input as JSON, not as a string);
- ``tool`` results become ``tool_result`` blocks of a user turn; consecutive turns of one role are merged,
  so parallel tool results travel together, as Claude requires.

What cannot be translated (audio, file ids, the legacy ``function`` role) is refused with a 400 that names
the field. A message's ``name`` and an image's ``detail`` have no counterpart in Claude's API and are ignored.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from claudegate.openai.errors import UnsupportedParameterError

__all__ = ["translate_messages"]

_IMAGE_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def _bad(param: str, message: str) -> UnsupportedParameterError:
    return UnsupportedParameterError(param, f"{param}: {message}")


def translate_messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The system blocks and the Anthropic messages of an OpenAI ``messages`` list."""
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "a non-empty list of messages is required")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _bad(where, "each message must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), f"{where}.content"))
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), f"{where}.content")
            _append(turns, "user", blocks)
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(message, where))
        elif role == "tool":
            _append(turns, "user", [_tool_result(message, where)])
        elif role == "function":
            raise _bad(f"{where}.role", "the legacy 'function' role is not supported; use 'tool' messages")
        else:
            raise _bad(f"{where}.role", "expected 'system', 'developer', 'user', 'assistant' or 'tool'")
    if not turns:
        raise _bad("messages", "at least one user message is required besides system messages")
    return system, turns


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _text_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Content that may hold text only (system, developer and tool messages)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad(where, "expected a string or a list of text parts")
    blocks: list[dict[str, Any]] = []
    for position, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise _bad(f"{where}[{position}]", "only text parts are supported here")
        if part["text"]:
            blocks.append({"type": "text", "text": part["text"]})
    return blocks


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if not content:
            raise _bad(where, "a user message must not be empty")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise _bad(where, "expected a string or a non-empty list of content parts")
    blocks: list[dict[str, Any]] = []
    for position, part in enumerate(content):
        at = f"{where}[{position}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), f"{at}.image_url"))
        elif kind == "file":
            blocks.append(_file(part.get("file"), f"{at}.file"))
        elif kind == "input_audio":
            raise _bad(at, "audio input is not supported by Claude")
        else:
            raise _bad(f"{at}.type", "expected a 'text', 'image_url' or 'file' part")
    if not blocks:
        raise _bad(where, "a user message must not be empty")
    return blocks


def _data_url(url: str, where: str) -> tuple[str, str]:
    """The media type and base64 data of a ``data:<type>;base64,<data>`` URL."""
    head, comma, data = url.partition(",")
    media_type, _, encoding = head[len("data:") :].partition(";")
    if not comma or encoding != "base64" or not data:
        raise _bad(where, "a data URL must be 'data:<media type>;base64,<data>'")
    return media_type.lower(), data


def _image(image_url: Any, where: str) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, dict) else None
    if not isinstance(url, str):
        raise _bad(f"{where}.url", "an image URL is required")
    if url.startswith("data:"):
        media_type, data = _data_url(url, f"{where}.url")
        if media_type not in _IMAGE_TYPES:
            raise _bad(f"{where}.url", f"images must be JPEG, PNG, GIF or WebP, not {media_type}")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad(f"{where}.url", "expected an http(s) URL or a data URL")


def _file(file: Any, where: str) -> dict[str, Any]:
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise _bad(where, "only files sent inline as a data URL in 'file_data' are supported (not file ids)")
    media_type, data = _data_url(data_url, f"{where}.file_data")
    if media_type != "application/pdf":
        raise _bad(f"{where}.file_data", f"only PDF files are supported, not {media_type}")
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    content = message.get("content")
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif isinstance(content, list):
        for position, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            text = part.get(kind) if kind in ("text", "refusal") else None
            if not isinstance(text, str):
                raise _bad(f"{where}.content[{position}]", "expected a 'text' or 'refusal' part")
            if text:
                blocks.append({"type": "text", "text": text})
    elif content is not None:
        raise _bad(f"{where}.content", "expected a string, a list of text parts or null")
    if message.get("audio") is not None:
        raise _bad(f"{where}.audio", "audio is not supported by Claude")
    if message.get("function_call") is not None:
        raise _bad(f"{where}.function_call", "the legacy 'function_call' is not supported; use 'tool_calls'")
    tool_calls = message.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise _bad(f"{where}.tool_calls", "expected a list")
    for position, call in enumerate(tool_calls):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{position}]"))
    return blocks


def _tool_use(call: Any, where: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or call.get("type", "function") != "function":
        raise _bad(where, "expected a function tool call")
    call_id, name, arguments = call.get("id"), function.get("name"), function.get("arguments") or "{}"
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, str):
        raise _bad(where, "a tool call needs an 'id', a 'function.name' and 'function.arguments' (a string)")
    try:
        tool_input = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise _bad(f"{where}.function.arguments", "must be a JSON object") from None
    if not isinstance(tool_input, dict):
        raise _bad(f"{where}.function.arguments", "must be a JSON object")
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str):
        raise _bad(f"{where}.tool_call_id", "a tool message needs the id of the tool call it answers")
    content = message.get("content")
    if isinstance(content, str):
        return {"type": "tool_result", "tool_use_id": call_id, "content": content}
    return {
        "type": "tool_result",
        "tool_use_id": call_id,
        "content": _text_blocks(content, f"{where}.content"),
    }
