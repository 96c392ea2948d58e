"""What the question service needs to get an answer: one async method, and failures sorted by the kind
of message a viewer gets for them. ``claude.py`` implements it with claudegate's in-process client; tests
use fakes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

__all__ = ["AnswerFailed", "Answerer", "FailureKind", "QueuedCallback"]

FailureKind = Literal["busy", "slow", "trouble"]
QueuedCallback = Callable[[int, float], None]  # (position in the queue, predicted wait in seconds)


class AnswerFailed(Exception):  # noqa: N818 - names an outcome  # noqa: N818 - names an outcome
    """No answer. ``kind`` is what the viewer is told: ``busy`` (no capacity before the deadline, or the
    service is overloaded; ``retry_after`` says when there will be), ``slow`` (the answer did not come in
    time) or ``trouble`` (anything else: the service failed or cannot be reached)."""

    def __init__(self, kind: FailureKind, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message or kind)
        self.kind: FailureKind = kind
        self.retry_after = retry_after


class Answerer(Protocol):
    async def answer(
        self, question: str, *, max_chars: int, deadline_s: float, on_queued: QueuedCallback | None = None
    ) -> str:
        """An answer of about ``max_chars`` characters at most, started within ``deadline_s``; raises
        :class:`AnswerFailed`. ``on_queued`` hears the position and predicted wait when the call must wait."""
        ...
