"""The files a Messages request cites by id (``{"source": {"type": "file", "file_id": …}}`` in image and
document blocks, and ``container_upload`` blocks), wherever they are nested.

This runs on every Messages call the gateway serves, over the parsed body: text, thinking and tool-use
blocks, nearly all of any conversation, are passed over at the cost of one lookup each (they never make
the API read a file), which keeps the walk cheaper than parsing the body was. Scanning the raw bytes for
``file_id`` instead would cost more on long conversations, since the key could also hide behind a JSON
``\\u`` escape and every escape would have to be looked for too.
"""

from __future__ import annotations

from typing import Any

__all__ = ["cited_file_ids"]

# Blocks the API never reads a file for, whatever else they hold.
_NO_FILES = frozenset({"text", "thinking", "redacted_thinking", "tool_use", "server_tool_use"})


def cited_file_ids(body: dict[str, Any]) -> list[str]:
    """The distinct file ids a Messages body cites, in order of first mention."""
    found: dict[str, None] = {}
    messages = body.get("messages")
    if type(messages) is not list:
        return []
    for message in messages:
        if type(message) is dict:
            content = message.get("content")
            if type(content) is list:
                _collect(content, found)
    return list(found)


def _collect(blocks: list[Any], found: dict[str, None]) -> None:
    for block in blocks:
        if type(block) is not dict:
            continue
        kind = block.get("type")
        if type(kind) is str and kind in _NO_FILES:  # any other type (even a list or dict) is looked into
            continue
        source = block.get("source")
        if type(source) is dict:
            if source.get("type") == "file" and type(source.get("file_id")) is str:
                found[source["file_id"]] = None
            elif type(source.get("content")) is list:  # a document whose source is content blocks
                _collect(source["content"], found)
        if type(block.get("file_id")) is str:  # container_upload
            found[block["file_id"]] = None
        nested = block.get("content")  # a tool result's or a search result's blocks
        if type(nested) is list:
            _collect(nested, found)
