"""Automatic prompt-cache breakpoints for a conversation's request.

A breakpoint (``cache_control``) on a block asks the API to cache the prefix that ends there (tools → system
→ messages). On the next turn, the API finds the longest cached prefix by looking back up to 20 blocks from
each breakpoint. For a conversation that means:

1. the **turn before the new message** (the end of the last reply): its prefix was the whole conversation at
   the previous call's end; marking it keeps the conversation's history read from the cache;
2. the **last system block**, so the system prompt alone stays cached when the history changes (a new
   conversation with the same prompt version, or history trimmed at its start);
3. the **last tool**, for the same reason with tool definitions;
4. the **new message**, so the next turn reads everything up to here: without it, the question would be
   paid in full now and written to the cache only next time.

At most four breakpoints exist in a request (the API refuses a fifth); those already in the body count, and
the list above is the order of preference. Breakpoints whose prefix is shorter than the model's minimum
cacheable length are ignored by the API at no cost, so they are placed regardless.

The system prompt is sent as one text block built the same way on every turn, so its bytes never change.
Blocks are copied before being marked: the stored history is never modified.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["MAX_BREAKPOINTS", "place_breakpoints", "system_blocks"]

MAX_BREAKPOINTS: Final = 4
_UNCACHEABLE: Final = frozenset({"thinking", "redacted_thinking"})


def system_blocks(system: str) -> list[dict[str, Any]]:
    """The system prompt as the request carries it: one text block, identical on every turn."""
    return [{"type": "text", "text": system}]


def _cacheable(block: Any) -> bool:
    if not isinstance(block, dict):
        return False
    if block.get("type") in _UNCACHEABLE:
        return False
    return not (block.get("type") == "text" and not block.get("text"))


def _count_existing(body: dict[str, Any]) -> int:
    count = sum(1 for tool in body.get("tools") or [] if isinstance(tool, dict) and "cache_control" in tool)
    system = body.get("system")
    if isinstance(system, list):
        count += sum(1 for block in system if isinstance(block, dict) and "cache_control" in block)
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            count += sum(1 for block in content if isinstance(block, dict) and "cache_control" in block)
    return count


def _mark_message(messages: list[dict[str, Any]], index: int, marker: dict[str, Any]) -> bool:
    """Mark the last cacheable block of ``messages[index]`` (copying the message); False if it has none."""
    message = messages[index]
    content = message["content"]
    blocks: list[Any] = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    for position in range(len(blocks) - 1, -1, -1):
        if _cacheable(blocks[position]):
            if "cache_control" in blocks[position]:
                return False
            blocks[position] = {**blocks[position], "cache_control": marker}
            messages[index] = {**message, "content": blocks}
            return True
    return False


def place_breakpoints(
    body: dict[str, Any], *, ttl: str | None = None, cache_new_message: bool = True
) -> list[str]:
    """Add cache breakpoints to a Messages request body (changed in place, blocks copied) and return where
    they went (``"previous_turn"``, ``"system"``, ``"tools"``, ``"new_message"``).

    The body's ``messages`` must end with the new user message; everything before it is history.
    """
    marker: dict[str, Any] = {"type": "ephemeral"} if ttl is None else {"type": "ephemeral", "ttl": ttl}
    slots = MAX_BREAKPOINTS - _count_existing(body)
    placed: list[str] = []
    messages: list[dict[str, Any]] = list(body.get("messages") or [])
    body["messages"] = messages

    def previous_turn() -> bool:
        return len(messages) >= 2 and _mark_message(messages, len(messages) - 2, marker)

    def system() -> bool:
        blocks = body.get("system")
        if isinstance(blocks, str) and blocks:
            blocks = system_blocks(blocks)
        if not isinstance(blocks, list) or not blocks or not _cacheable(blocks[-1]):
            return False
        if "cache_control" in blocks[-1]:
            return False
        body["system"] = [*blocks[:-1], {**blocks[-1], "cache_control": marker}]
        return True

    def tools() -> bool:
        defined = body.get("tools")
        if not isinstance(defined, list) or not defined or "cache_control" in defined[-1]:
            return False
        body["tools"] = [*defined[:-1], {**defined[-1], "cache_control": marker}]
        return True

    def new_message() -> bool:
        return cache_new_message and bool(messages) and _mark_message(messages, len(messages) - 1, marker)

    for name, place in (
        ("previous_turn", previous_turn),
        ("system", system),
        ("tools", tools),
        ("new_message", new_message),
    ):
        if slots <= 0:
            break
        if place():
            placed.append(name)
            slots -= 1
    return placed
