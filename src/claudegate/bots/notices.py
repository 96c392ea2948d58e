"""Apologies to viewers, gathered for a moment so that one line tells many of them.

A burst of a hundred questions may leave dozens of viewers refused at the same instant ("too busy"), or a
shutdown may leave them unanswered. Telling each in a line of their own would spend the channel's whole
message allowance (20 or 100 per 30 s). So notices of one kind wait ``batch_s`` (a quarter of a second by
default) and then leave as ``@a @b @c … text`` lines of up to 500 characters; the text is the same for each of
them (when to ask again is the latest of theirs). Waits, which differ per viewer, are told by
:mod:`~claudegate.bots.waits` instead.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from claudegate.bots.outbox import PRIORITY_NOTICE, Line, Outbox

__all__ = ["Notice", "NoticeBoard", "render"]

NOTICE_MAX_CHARS = 500  # Twitch's limit for one message


@dataclass(eq=False, slots=True)
class Notice:
    kind: str  # busy, slow, trouble, shutdown, closing
    mention: str
    seconds: float | None = None  # when to ask again
    on_sent: Callable[[float], None] | None = field(default=None, repr=False)


def render(kind: str, notices: Sequence[Notice], *, deadline_s: float) -> str:
    """The text (after the mentions) that tells ``notices``' viewers what ``kind`` of news they have."""
    seconds = [n.seconds for n in notices if n.seconds is not None]
    if kind == "busy":
        again = f"about {max(1, math.ceil(max(seconds)))} s" if seconds else "a minute"
        return (
            f"sorry, I'm too busy to answer within {deadline_s:g} s right now. Please ask again in {again}."
        )
    if kind == "slow":
        return "sorry, the answer took too long to come. Please ask again in a minute."
    if kind == "trouble":
        return "sorry, I can't reach Claude right now. Please try again in a few minutes."
    if kind == "shutdown":
        return "sorry, I'm going offline before your answer was ready. Please ask again when I'm back."
    if kind == "closing":
        return "sorry, I'm going offline and not taking questions now."
    raise ValueError(f"unknown notice kind {kind!r}")


_EXPIRES: dict[str, float] = {"closing": 10.0}


class NoticeBoard:
    """Collects notices and sends them, grouped by kind, ``batch_s`` after the first of a batch."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        batch_s: float,
        deadline_s: float,
        max_chars: int = NOTICE_MAX_CHARS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outbox = outbox
        self._batch_s = batch_s
        self._deadline_s = deadline_s
        self._max_chars = max_chars
        self._clock = clock
        self._pending: dict[str, list[Notice]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, notice: Notice) -> None:
        self._pending.setdefault(notice.kind, []).append(notice)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._batch_s, self.flush)

    def flush(self) -> None:
        """Send what has gathered now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        now = self._clock()
        for kind, notices in pending.items():
            for group, text in self._groups(kind, notices):
                self._outbox.put(
                    Line(
                        text=" ".join(n.mention for n in group) + " " + text,
                        kind=kind,
                        priority=PRIORITY_NOTICE,
                        expires_at=now + _EXPIRES[kind] if kind in _EXPIRES else None,
                        on_sent=_fan_out(group),
                    )
                )

    def _groups(self, kind: str, notices: list[Notice]) -> list[tuple[list[Notice], str]]:
        """Notices split into groups whose mentions fit one line with their text."""
        unique = list({n.mention: n for n in notices}.values())
        groups: list[tuple[list[Notice], str]] = []
        group: list[Notice] = []
        for notice in unique:
            candidate = [*group, notice]
            text = render(kind, candidate, deadline_s=self._deadline_s)
            if group and sum(len(n.mention) + 1 for n in candidate) + len(text) > self._max_chars:
                groups.append((group, render(kind, group, deadline_s=self._deadline_s)))
                group = [notice]
            else:
                group = candidate
        if group:
            groups.append((group, render(kind, group, deadline_s=self._deadline_s)))
        return groups


def _fan_out(group: list[Notice]) -> Callable[[float], None]:
    def sent(at: float) -> None:
        for notice in group:
            if notice.on_sent is not None:
                notice.on_sent(at)

    return sent
