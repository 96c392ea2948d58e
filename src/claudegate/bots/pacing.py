"""Planning the chat's lines: when each waiting answer will go out, and how many answers must share a line.

Twitch's limit is a sliding window: at most ``limit`` lines in any ``window_s`` seconds. Given the lines
already sent and the answers still to come (each with the moment it will be ready and its length), the
outbox's behaviour is replayed here on paper: at each free slot, every ready answer that fits goes into one
line. That gives each viewer their own predicted wait, from their place in the outgoing queue and the limit.

When more answers are coming than the window has lines for, the bot asks the model for shorter answers so
that several fit one line: :meth:`Planner.answers_per_line` compares the answers expected (in progress,
waiting to be sent, and those the recent rate of questions says will follow) with the lines free before
the deadline, less a few kept for wait notices.

Everything here is a pure function of the clock and the state given, so tests drive it with numbers.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from claudegate.bots.outbox import SlidingWindow

__all__ = ["LINE_MAX_CHARS", "PART_SEPARATOR", "Planner", "Upcoming", "part_budget", "project"]

LINE_MAX_CHARS = 500  # Twitch's limit for one message, in characters
PART_SEPARATOR = " | "  # between two viewers' answers in one line
_WAIT_ENTRY_CHARS = 20  # "@viewer_name 12 s, ": how much of a wait notice one viewer takes
_RATE_WINDOW_S = 3.0  # questions over this long give the recent rate
_MIN_RATE_SPAN_S = 0.25  # a rate is never measured over less than this (two questions 1 ms apart)


@dataclass(frozen=True, slots=True)
class Upcoming:
    """An answer still to be sent: when it will be ready (now, if it is waiting in the outbox) and how many
    characters of a line it will take."""

    ready_at: float
    chars: int


def project(
    window: SlidingWindow,
    now: float,
    upcoming: Sequence[Upcoming],
    *,
    lines_first: int = 0,
    hold_s: float = 0.0,
    reserved: int = 0,
    max_chars: int = LINE_MAX_CHARS,
) -> list[float]:
    """When each of ``upcoming`` will be sent (in its order), if the outbox sends ``lines_first`` other lines
    first (notices), then at each free slot one line with every ready answer that fits. With ``hold_s``, a
    line that is not full waits until its oldest answer has been ready that long, for others to join it.
    Answers leave the window's last ``reserved`` lines to notices, but for the last answer line."""
    order = sorted(range(len(upcoming)), key=lambda i: upcoming[i].ready_at)
    sent_at = [math.inf] * len(upcoming)
    times = [t for t in window.times() if t > now - window.window_s]

    def next_slot(earliest: float, limit: int) -> float:
        if len(times) < limit:
            return earliest
        return max(earliest, times[-limit] + window.window_s)

    for _ in range(lines_first):
        times.append(next_slot(now, window.limit))
    waiting = deque(order)
    while waiting:
        first = upcoming[waiting[0]].ready_at
        left = sum(upcoming[i].chars for i in waiting) + len(PART_SEPARATOR) * (len(waiting) - 1)
        slot = next_slot(max(now, first), max(1, window.limit - (reserved if left > max_chars else 0)))
        gather_until = max(slot, first + hold_s)
        used = 0
        full = False
        carried: list[int] = []
        for index in waiting:
            item = upcoming[index]
            if item.ready_at > gather_until:
                break
            extra = item.chars + (len(PART_SEPARATOR) if carried else 0)
            if carried and used + extra > max_chars:
                full = True
                continue
            used += extra
            carried.append(index)
        for index in carried:
            waiting.remove(index)
        last_ready = max(upcoming[index].ready_at for index in carried)
        at = max(slot, last_ready if full or not waiting else gather_until)
        for index in carried:
            sent_at[index] = at
        times.append(at)
    return sent_at


def part_budget(per_line: int, mention_chars: int, *, longest: int, max_chars: int = LINE_MAX_CHARS) -> int:
    """Characters of answer text for a viewer whose answer shares a line with ``per_line - 1`` others (the
    mention and separators come off), never more than ``longest`` (a line of its own)."""
    share = (max_chars - len(PART_SEPARATOR) * (per_line - 1)) // per_line
    return max(1, min(longest, share - mention_chars - 1))


class Planner:
    """How many answers must share a line, from the answers expected and the lines free before the
    deadline; and the recent rate of questions that feeds it."""

    def __init__(self, *, horizon_s: float, max_per_line: int) -> None:
        self.horizon_s = horizon_s
        self.max_per_line = max_per_line
        self._asked: deque[float] = deque()

    def asked(self, now: float) -> None:
        """A question was accepted at ``now``."""
        self._asked.append(now)

    def expected_more(self, now: float, lookahead_s: float) -> float:
        """Questions the recent rate says will come within ``lookahead_s``."""
        while self._asked and self._asked[0] < now - _RATE_WINDOW_S:
            self._asked.popleft()
        if len(self._asked) < 2:
            return 0.0
        span = max(_MIN_RATE_SPAN_S, now - self._asked[0])
        return len(self._asked) / span * lookahead_s

    def lines_free(self, window: SlidingWindow, now: float) -> int:
        """Lines the window lets out from now until the horizon."""
        limit = window.limit
        recent = [t for t in window.times() if t > now - window.window_s]
        freed = sum(1 for t in recent if t + window.window_s <= now + self.horizon_s)
        return limit - len(recent) + freed

    def answers_per_line(
        self,
        window: SlidingWindow,
        now: float,
        *,
        outstanding: int,
        lookahead_s: float,
        notices_queued: int = 0,
    ) -> int:
        """Answers per line so that the ``outstanding`` ones (in progress or unsent) and those expected
        within ``lookahead_s`` all go out before the horizon, keeping lines for wait notices."""
        expected = outstanding + self.expected_more(now, lookahead_s)
        free = self.lines_free(window, now) - notices_queued
        for_notices = math.ceil(expected * _WAIT_ENTRY_CHARS / LINE_MAX_CHARS)
        for_answers = max(1, free - for_notices)
        return max(1, min(self.max_per_line, math.ceil(expected / for_answers)))
