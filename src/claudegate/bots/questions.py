"""Questions: recognising the command, checking what is asked, and the normal form that tells identical
questions apart from different ones."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["QuestionCheck", "normalise", "parse_command"]


def parse_command(text: str, prefix: str) -> str | None:
    """The question in ``!ask <question>``, or None when the message is not the command. The prefix is
    matched without regard to case and must stand alone (``!asking`` is not ``!ask``)."""
    stripped = text.strip()
    if stripped.startswith("\x01"):
        return None  # CTCP (/me ...): not a command
    head = stripped[: len(prefix)]
    if head.casefold() != prefix.casefold():
        return None
    rest = stripped[len(prefix) :]
    if rest and not rest[0].isspace():
        return None
    return rest.strip()


def normalise(text: str) -> str:
    """The question's normal form: compatibility-normalised, case-folded, punctuation dropped, spaces
    collapsed. "What is Rust?", "what is rust" and "WHAT  IS RUST ?!" are one question."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(" " if unicodedata.category(char).startswith("P") else char for char in folded)
    return " ".join(kept.split())


@dataclass(frozen=True, slots=True)
class QuestionCheck:
    """Length limits (in characters) and blocked words or phrases, matched on whole words in the normal
    form, so "Rust" blocks "rust?" but not "trust"."""

    min_chars: int = 5
    max_chars: int = 500
    blocked: tuple[str, ...] = ()

    @classmethod
    def of(cls, *, min_chars: int, max_chars: int, blocked: Iterable[str]) -> QuestionCheck:
        phrases = tuple(phrase for phrase in (normalise(b) for b in blocked) if phrase)
        return cls(min_chars=min_chars, max_chars=max_chars, blocked=phrases)

    def refusal(self, question: str) -> str | None:
        """Why the question is refused, as a short phrase for the viewer, or None when it is fine."""
        length = len(question)
        if length < self.min_chars:
            return f"please ask a question of at least {self.min_chars} characters"
        if length > self.max_chars:
            return f"please keep your question under {self.max_chars} characters"
        padded = f" {normalise(question)} "
        if any(f" {phrase} " in padded for phrase in self.blocked):
            return "sorry, I can't take that question"
        return None
