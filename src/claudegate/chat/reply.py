"""A reply as the chat API stores and shows it: content blocks fit to be sent back, its text, its usage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from claudegate.store.chat_rows import ReplyUsage

__all__ = ["normalise_blocks", "reply_text", "usage_json"]


def usage_json(usage: ReplyUsage) -> dict[str, Any]:
    """A call's usage for the chat API: ``input_tokens`` counts every input token, cached or not."""
    tokens = usage.tokens
    total_in = tokens.total_input_tokens
    return {
        "input_tokens": total_in,
        "output_tokens": tokens.output_tokens,
        "total_tokens": total_in + tokens.output_tokens,
        "cache_creation_input_tokens": tokens.cache_creation_input_tokens,
        "cache_read_input_tokens": tokens.cache_read_input_tokens,
    }


def reply_text(content: Sequence[Any]) -> str:
    return "".join(
        str(block.get("text", ""))
        for block in content
        if isinstance(block, dict) and block.get("type") == "text"
    )


def normalise_blocks(content: Sequence[Any]) -> list[dict[str, Any]]:
    """A reply's content as it will be sent back in later turns: output-only fields dropped."""
    blocks: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            if not block.get("text"):
                continue  # the API refuses empty text blocks in a request
            text: dict[str, Any] = {"type": "text", "text": block["text"]}
            if block.get("citations"):
                text["citations"] = block["citations"]
            blocks.append(text)
        elif kind == "tool_use":
            blocks.append(
                {
                    "type": "tool_use",
                    "id": block.get("id"),
                    "name": block.get("name"),
                    "input": block.get("input", {}),
                }
            )
        elif kind == "thinking":
            blocks.append(
                {
                    "type": "thinking",
                    "thinking": block.get("thinking", ""),
                    "signature": block.get("signature", ""),
                }
            )
        else:
            blocks.append(dict(block))
    return blocks
