"""The files a Messages request cites by id (``{"source": {"type": "file", "file_id": …}}`` in image and
document blocks, and ``container_upload`` blocks), wherever they are nested."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["cited_file_ids"]


def cited_file_ids(body: dict[str, Any]) -> list[str]:
    """The distinct file ids a Messages body cites, in order of first mention."""
    found: dict[str, None] = {}
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            found.update(dict.fromkeys(_block_file_ids(content)))
    return list(found)


def _block_file_ids(blocks: list[Any]) -> Iterator[str]:
    for block in blocks:
        if not isinstance(block, dict):
            continue
        source = block.get("source")
        if isinstance(source, dict) and source.get("type") == "file":
            if isinstance(source.get("file_id"), str):
                yield source["file_id"]
            continue
        if block.get("type") == "container_upload" and isinstance(block.get("file_id"), str):
            yield block["file_id"]
        nested = block.get("content")  # a tool result's blocks, or a document's content source
        if isinstance(nested, list):
            yield from _block_file_ids(nested)
        if isinstance(source, dict) and isinstance(source.get("content"), list):
            yield from _block_file_ids(source["content"])
