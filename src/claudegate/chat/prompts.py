"""Which version of a prompt a new conversation gets.

With an A/B split, the version is drawn by weight from a hash of the conversation id, so the draw is
reproducible; it is then stored on the conversation, which keeps it for good (sticky), whatever later happens
to the split or the active version. The system prompt of a conversation therefore never changes, which is
also what keeps its prompt-cache prefix valid.
"""

from __future__ import annotations

import hashlib

from claudegate.store.chat_rows import PromptRow

__all__ = ["choose_version", "draw"]


def draw(weights: dict[int, float], seed: str) -> int:
    """A version drawn from ``weights`` ({version: weight > 0}) by a uniform number derived from ``seed``."""
    if not weights:
        raise ValueError("no versions to draw from")
    digest = hashlib.blake2b(seed.encode(), digest_size=8).digest()
    point = int.from_bytes(digest, "big") / 2**64 * sum(weights.values())
    for version, weight in sorted(weights.items()):
        point -= weight
        if point < 0:
            return version
    return max(weights)


def choose_version(prompt: PromptRow, chat_id: str) -> int | None:
    """The version a new conversation ``chat_id`` gets: drawn from the split if there is one, else the
    active version (None when the prompt has none)."""
    if prompt.split:
        return draw(prompt.split, f"{prompt.id}:{chat_id}")
    return prompt.active_version
