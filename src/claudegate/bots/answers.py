"""An answer fitted to the chat: one line, at most so many characters, cut where a reader expects a cut.

Lengths are counted in characters (code points), as Twitch counts them, never in bytes; Python strings are
sequences of code points, so no cut can fall inside a UTF-8 sequence. A cut falls after a sentence when
that keeps at least half of the budget, else after a word, marked with an ellipsis. Only a single word longer
than the whole budget is cut inside, and then never inside a user-perceived character: not before a
combining mark, a variation selector, an emoji modifier or a zero-width joiner, not after a joiner, and not
between the two regional indicators of a flag.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence

__all__ = ["ELLIPSIS", "answer_lines", "cut", "max_tokens_for", "pack_mentions", "text_budget", "tidy"]

ELLIPSIS = "…"
_MIN_MAX_TOKENS = 16
# A sentence ends with . ! ? or … (then maybe closing quotes or brackets) before a space or the end;
# the CJK full stops need no space after them.
_SENTENCE_END = re.compile(r"(?:[.!?…]+[\"'”’)\]»]*(?=\s)|[。！？]+[」』”’)）]*)")
_TRAILING_JOINERS = ",;:-–—(/[{\"'“‘«"
_MARKUP = re.compile(r"(\*\*|__|`+)")
_ZWJ = "\u200d"


def max_tokens_for(chars: int, chars_per_token: float) -> int:
    """``max_tokens`` for an answer of ``chars`` characters: the model is asked for brevity, and the
    budget caps what it may produce (an over-long answer is then cut, not refused)."""
    return max(_MIN_MAX_TOKENS, math.ceil(chars / chars_per_token))


def tidy(text: str) -> str:
    """One chat line from a model's text: bold/code markup dropped, line breaks and runs of spaces made one
    space."""
    return " ".join(_MARKUP.sub("", text).split())


def _is_extender(char: str) -> bool:
    """Characters that belong to the character before them."""
    code = ord(char)
    return (
        unicodedata.category(char).startswith("M")
        or char == _ZWJ
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0xE0100 <= code <= 0xE01EF
        or 0x1F3FB <= code <= 0x1F3FF  # skin-tone modifiers
        or 0xE0020 <= code <= 0xE007F  # tag characters (subdivision flags)
    )


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _safe_break(text: str, position: int) -> bool:
    """Whether ``text[:position]`` ends between two user-perceived characters."""
    if position <= 0 or position >= len(text):
        return True
    if _is_extender(text[position]) or text[position - 1] == _ZWJ:
        return False
    if _is_regional_indicator(text[position]):
        run = 0
        while position - run - 1 >= 0 and _is_regional_indicator(text[position - run - 1]):
            run += 1
        return run % 2 == 0
    return True


def cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters (see the module's docstring for where it is cut)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    if limit <= 1:
        return ""
    sentence_end = 0
    for match in _SENTENCE_END.finditer(text, 0, limit + 1):
        if match.end() <= limit:
            sentence_end = match.end()
    if sentence_end * 2 >= limit:
        return text[:sentence_end]
    room = limit - len(ELLIPSIS)
    space = max((text.rfind(blank, 0, room + 1) for blank in (" ", "\u3000", "\t")), default=-1)
    if space > 0:
        head = text[:space].rstrip().rstrip(_TRAILING_JOINERS).rstrip()
        if head:
            return head + ELLIPSIS
    position = room
    while position > 0 and not _safe_break(text, position):
        position -= 1
    return text[:position] + ELLIPSIS if position > 0 else ""


def text_budget(mentions: Sequence[str], max_chars: int) -> int:
    """Characters left for the answer when a line must hold at least the longest of ``mentions``."""
    longest = max((len(mention) for mention in mentions), default=0)
    return max(0, max_chars - longest - 1)


def pack_mentions(mentions: Sequence[str], text: str, max_chars: int) -> list[tuple[list[str], str]]:
    """Lines of ``@a @b … text``, each at most ``max_chars`` long, that mention everyone once (in order),
    each with the mentions it holds. A mention too long to share a line with ``text`` gets its own line,
    with the text cut to fit."""
    lines: list[tuple[list[str], str]] = []
    group: list[str] = []
    for mention in dict.fromkeys(mentions):
        candidate = [*group, mention]
        if group and len(" ".join(candidate)) + 1 + len(text) > max_chars:
            lines.append((group, _line(group, text, max_chars)))
            group = [mention]
        else:
            group = candidate
    if group:
        lines.append((group, _line(group, text, max_chars)))
    return lines


def _line(group: Sequence[str], text: str, max_chars: int) -> str:
    head = " ".join(group)
    if not text:
        return head[:max_chars]
    return f"{head} {cut(text, max_chars - len(head) - 1)}".rstrip()


def answer_lines(mentions: Sequence[str], answer: str, max_chars: int) -> list[str]:
    """The lines that carry ``answer`` to everyone who asked: tidied, cut to the budget the longest mention
    leaves, then packed with as many mentions per line as fit."""
    text = cut(tidy(answer), text_budget(mentions, max_chars))
    return [line for _group, line in pack_mentions(mentions, text, max_chars)]
