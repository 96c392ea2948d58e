"""Which earlier turns of a conversation go to the model: the most recent ones that fit a token budget.

Two rules besides the budget:

- History may only start at a user message that answers no tool call (no ``tool_result`` block): starting
  anywhere else would send a ``tool_result`` without the ``tool_use`` it answers, or an assistant turn first,
  and the API refuses both.
- The start moves in steps of whole groups of turns (``step``), not one turn at a time. A prompt cache entry
  covers a prefix of the conversation; if the oldest turn were dropped at every new turn, no two calls would
  share a prefix beyond the system prompt, and a long conversation would never read its history from the
  cache. Starting only at every ``step``-th turn (counted from the conversation's first), the start stays put
  for ``step`` turns at a time, at the price of sending up to ``step`` turns fewer than would fit.

Sizes are counted with the tokenizer shared with the simulator (``claudegate.wire.tokens``), the way the API
counts a request's messages; they are estimates for real models, which is all a budget needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from claudegate.wire.tokens import MESSAGE_OVERHEAD_TOKENS, count_text_tokens, count_value_tokens

__all__ = ["DEFAULT_STEP", "HistoryMessage", "block_tokens", "content_tokens", "history_start"]

DEFAULT_STEP: Final = 4
_IMAGE_TOKENS: Final = 1590  # an image or document whose size is not known here: a typical one


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    role: str
    content: list[Any]
    tokens: int


def block_tokens(block: Any) -> int:
    """The tokens of one content block (or of a plain string)."""
    if isinstance(block, str):
        return count_text_tokens(block)
    if not isinstance(block, dict):
        return count_value_tokens(block)
    kind = block.get("type")
    if kind == "text":
        return count_text_tokens(str(block.get("text", "")))
    if kind == "tool_use":
        return count_text_tokens(str(block.get("name", ""))) + count_value_tokens(block.get("input", {}))
    if kind == "tool_result":
        content = block.get("content")
        if content is None:
            return 1
        if isinstance(content, str):
            return count_text_tokens(content)
        return sum(block_tokens(item) for item in content)
    if kind == "thinking":
        return count_text_tokens(str(block.get("thinking", "")))
    if kind in ("image", "document"):
        return _IMAGE_TOKENS
    return count_value_tokens({k: v for k, v in block.items() if k != "cache_control"})


def content_tokens(content: str | Sequence[Any]) -> int:
    """The tokens a message with this content adds to a request, its framing included."""
    if isinstance(content, str):
        return MESSAGE_OVERHEAD_TOKENS + count_text_tokens(content)
    return MESSAGE_OVERHEAD_TOKENS + sum(block_tokens(block) for block in content)


def _starts_turn(message: HistoryMessage) -> bool:
    """Whether history may start here: a user message that answers no tool call."""
    if message.role != "user":
        return False
    return not any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in message.content
    )


def history_start(
    history: Sequence[HistoryMessage], budget: int, *, new_tokens: int = 0, step: int = DEFAULT_STEP
) -> int:
    """The index in ``history`` (earlier messages, oldest first) from which to send it, so that what is sent
    and the new message (``new_tokens``) fit in ``budget`` tokens. ``len(history)`` means none of it (the
    new message alone is sent even if it is over the budget: the API, not the budget, has the last word).

    Of the starts that fit, the earliest at a multiple of ``step`` turns is taken; if none of those fits, the
    earliest that does.
    """
    if step < 1:
        raise ValueError("step must be at least 1")
    end = len(history)
    suffix = [0] * (end + 1)
    for index in range(end - 1, -1, -1):
        suffix[index] = suffix[index + 1] + history[index].tokens
    fitting: list[int] = []
    aligned: list[int] = []
    turn = 0
    for index, message in enumerate(history):
        if not _starts_turn(message):
            continue
        if suffix[index] + new_tokens <= budget:
            fitting.append(index)
            if turn % step == 0:
                aligned.append(index)
        turn += 1
    if aligned:
        return aligned[0]
    if fitting:
        return fitting[0]
    return end
