"""Token counting shared by the simulator (as its tokenizer) and the gateway (as its estimator).

Anthropic's tokenizer is not public. This one is deterministic and close enough to real English counts
(about 1.3 tokens per word): a token is a run of up to eight letters with an optional leading space, a run of
up to three digits, one other visible character (the underscore included), or a run of white space. Every
character belongs to exactly one token, so a text's tokens joined together give the text back. The simulator
generates replies out of exactly such pieces, so counting a reply's text gives back its output token count;
the gateway relies on that to account for streams a client abandons half way.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = [
    "MESSAGE_OVERHEAD_TOKENS",
    "REQUEST_OVERHEAD_TOKENS",
    "TOOLS_OVERHEAD_TOKENS",
    "count_text_tokens",
    "count_value_tokens",
    "token_pieces",
]

# Letters are \w without digits and "_"; so "_" needs a branch of its own, or it would belong to no token.
_TOKEN = re.compile(r" ?[^\W\d_]{1,8}| ?\d{1,3}| ?[^\s\w]| ?_|\s+")

# Framing that the API adds around the content: a fixed cost per request, per message and for the hidden
# system prompt that describes tools. The figures follow what Anthropic documents for tool use (hundreds of
# tokens) and what count_tokens reports for a one-word message (single digits).
REQUEST_OVERHEAD_TOKENS = 4
MESSAGE_OVERHEAD_TOKENS = 3
TOOLS_OVERHEAD_TOKENS = 300


def count_text_tokens(text: str) -> int:
    """Tokens in a piece of text."""
    if not text:
        return 0
    return sum(1 for _ in _TOKEN.finditer(text))


def count_value_tokens(value: Any) -> int:
    """Tokens in a JSON value (a tool definition, a tool input), counted over its compact serialisation."""
    return count_text_tokens(orjson.dumps(value).decode())


def token_pieces(text: str) -> list[str]:
    """Text split into its tokens (their concatenation is the text)."""
    return _TOKEN.findall(text)
