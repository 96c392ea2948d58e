"""Outgoing chat lines, paced to Twitch's message limits.

Twitch lets a bot send 20 messages per 30 s in a channel (100 as moderator or broadcaster) and locks an
account that sends more out of chat for 30 minutes; it also refuses the same text twice within 30 s. The
outbox keeps a sliding window of recent sends (never more than the limit in any window, which is stricter
than Twitch's own accounting), remembers recent texts (a repeat is dropped, not sent), and a queue ordered by
priority, then arrival. Notices that are only useful while fresh carry an expiry and are dropped when the
window held them back too long.

Lines marked ``packable`` share a line with others of their kind when it is their turn: several viewers'
answers, each whole, joined by a separator, or several viewers' waits under one lead, up to 500
characters. A line may be rendered when it is sent (``render``), so a wait is the one predicted then, and
a notice whose news is stale is dropped. When lines are scarce, a ``hold`` hook may keep a line that is not
full for a moment, so the answers about to come share it instead of each spending a line.

The pacing decisions are a pure function of the clock (:meth:`Outbox.poll`), so tests drive them with a
fake clock; :meth:`Outbox.run` is the loop that sleeps and sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from claudegate.bots.transport import ChatTransport, TransportUnavailable

__all__ = [
    "PACKED_MAX_CHARS",
    "PRIORITY_ANSWER",
    "PRIORITY_CHATTER",
    "PRIORITY_NOTICE",
    "Hold",
    "Line",
    "Outbox",
    "Packing",
    "SlidingWindow",
]

logger = logging.getLogger(__name__)

PRIORITY_NOTICE = 0  # grouped notices and fallbacks: one line tells many viewers
PRIORITY_ANSWER = 1
PRIORITY_CHATTER = 2  # one viewer's cooldown or refused question
PACKED_MAX_CHARS = 500  # Twitch's limit for one message, in characters
_EPSILON_S = 1e-9


@dataclass(eq=False, slots=True)
class Line:
    text: str
    kind: str = "answer"  # for metrics: answer, wait, busy, slow, trouble, cooldown, invalid, ...
    priority: int = PRIORITY_ANSWER
    expires_at: float | None = None  # on the outbox's clock: drop the line if it is not sent by then
    on_sent: Callable[[float], None] | None = field(default=None, repr=False)  # hears the send time
    mentions: tuple[str, ...] = ()  # the viewers it is for
    packable: bool = False  # may share a line with other packable lines of its kind
    render: Callable[[float], str | None] | None = field(default=None, repr=False)  # text at send time


@dataclass(frozen=True, slots=True)
class Packing:
    """How lines of one kind share a line: ``lead`` once, then the parts joined by ``separator``."""

    separator: str
    lead: str = ""


Hold = Callable[[float, int, int], float]
"""Asked ``(now, parts, chars)`` before a packed answer line goes: seconds to keep it back for more answers
to join it (0: send it now)."""


class SlidingWindow:
    """At most ``limit`` events in any ``window_s`` seconds."""

    __slots__ = ("_times", "limit", "window_s")

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    def _forget(self, now: float) -> None:
        # A send leaves the window exactly window_s later; _EPSILON_S keeps float rounding from deciding it.
        while self._times and self._times[0] <= now - self.window_s + _EPSILON_S:
            self._times.popleft()

    def used(self, now: float) -> int:
        self._forget(now)
        return len(self._times)

    def next_free(self, now: float) -> float:
        """Seconds until the oldest send leaves the window (inf when there is none)."""
        self._forget(now)
        return self._times[0] + self.window_s - now if self._times else math.inf

    def times(self) -> list[float]:
        """The sends still counted, oldest first (some may be older than the window: use with a time)."""
        return list(self._times)

    def delay(self, now: float) -> float:
        """Seconds until one more event is allowed (0: now)."""
        self._forget(now)
        if len(self._times) < self.limit:
            return 0.0
        return self._times[-self.limit] + self.window_s - now

    def record(self, now: float) -> None:
        self._times.append(now)


class Outbox:
    """The channel's outgoing lines. ``put`` queues, ``run`` sends (start it as a task)."""

    def __init__(
        self,
        transport: ChatTransport,
        *,
        limit: int,
        window_s: float = 30.0,
        duplicate_window_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_sent: Callable[[Line], None] | None = None,
        on_dropped: Callable[[Line, str], None] | None = None,
        packing: dict[str, Packing] | None = None,
        hold: Hold | None = None,
        max_chars: int = PACKED_MAX_CHARS,
    ) -> None:
        self._transport = transport
        self.window = SlidingWindow(limit, window_s)
        self._duplicate_window_s = duplicate_window_s
        self._clock = clock
        self._on_sent = on_sent
        self._on_dropped = on_dropped
        self.packing = packing or {}
        self.hold = hold
        self._max_chars = max_chars
        self._queue: list[tuple[int, int, Line]] = []
        self._order = itertools.count()
        self._recent: dict[str, float] = {}  # text -> when it was last sent
        self._paused_until = 0.0
        self._sending = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- queueing -----------------------------------------------------------------------------------------

    def put(self, line: Line) -> None:
        heapq.heappush(self._queue, (line.priority, next(self._order), line))
        self._idle.clear()
        self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def queued(self) -> list[Line]:
        """The lines waiting, in the order they will go."""
        return [item[2] for item in sorted(self._queue)]

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the platform said the bot is sending too fast)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)
        self._wake.set()

    # -- pacing (pure in the clock) -----------------------------------------------------------------------

    def poll(self, now: float) -> tuple[Line | None, float]:
        """The line to send now, or None and how long to wait before asking again (inf: until a put).

        Expired lines, lines whose news is stale and repeats of a recent text are dropped on the way."""
        while self._queue:
            line = self._queue[0][2]
            if line.expires_at is not None and now > line.expires_at:
                heapq.heappop(self._queue)
                self._dropped(line, "expired")
                continue
            if line.render is not None and line.render(now) is None:
                heapq.heappop(self._queue)
                self._dropped(line, "stale")
                continue
            sent_at = self._recent.get(line.text)
            if line.render is None and sent_at is not None and now - sent_at < self._duplicate_window_s:
                heapq.heappop(self._queue)
                self._dropped(line, "duplicate")
                continue
            wait = max(self._paused_until - now, self.window.delay(now))
            if wait > 0:
                return None, wait
            if not line.packable or line.kind not in self.packing:
                heapq.heappop(self._queue)
                return line, 0.0
            parts, text = self._pack(line, now)
            if self.hold is not None and line.render is None:
                try:
                    held = self.hold(now, len(parts), len(text))
                except Exception:  # a fault in the hook must not stop the chat's lines: send, and log it
                    logger.exception("the outbox's hold hook failed; sending the line now")
                    held = 0.0
                if held > 0:
                    return None, held
            taken = set(map(id, parts))
            self._queue = [item for item in self._queue if id(item[2]) not in taken]
            heapq.heapify(self._queue)
            return _merged(line, parts, text), 0.0
        self._idle.set()
        return None, math.inf

    def _pack(self, head: Line, now: float) -> tuple[list[Line], str]:
        """``head`` and the queued lines of its kind that fit one line with it, in queue order."""
        packing = self.packing[head.kind]
        parts: list[Line] = []
        texts: list[str] = []
        length = len(packing.lead)
        for _priority, _order, line in sorted(self._queue):
            if line.kind != head.kind or not line.packable:
                continue
            if line.expires_at is not None and now > line.expires_at:
                continue
            text = line.render(now) if line.render is not None else line.text
            if text is None:
                continue
            extra = len(text) + (len(packing.separator) if texts else 0)
            if texts and length + extra > self._max_chars:
                continue
            parts.append(line)
            texts.append(text)
            length += extra
        return parts, packing.lead + packing.separator.join(texts)

    def sent(self, line: Line, now: float) -> None:
        """``line`` went out at ``now``: count it against the limits."""
        self.window.record(now)
        self._recent[line.text] = now
        if len(self._recent) > 4 * self.window.limit:
            self._recent = {t: at for t, at in self._recent.items() if now - at < self._duplicate_window_s}
        if line.on_sent is not None:
            line.on_sent(now)
        if self._on_sent is not None:
            self._on_sent(line)

    def _dropped(self, line: Line, reason: str) -> None:
        logger.debug("chat line dropped (%s): %s", reason, line.text)
        if self._on_dropped is not None:
            self._on_dropped(line, reason)

    def _requeue(self, line: Line) -> None:
        # Back at the front of its priority (negative: before every line queued normally).
        heapq.heappush(self._queue, (line.priority, -next(self._order), line))

    # -- the loop -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            line, wait = self.poll(self._clock())
            if line is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=None if math.isinf(wait) else wait)
                continue
            self._sending = True
            try:
                await self._transport.send(line.text)
            except TransportUnavailable:
                self._requeue(line)
                await self._transport.wait_connected()
                continue
            finally:
                self._sending = False
            self.sent(line, self._clock())
            if not self._queue:
                self._idle.set()

    async def flush(self, within_s: float) -> bool:
        """Wait until every queued line is sent or dropped, at most ``within_s`` seconds; say whether it
        emptied."""
        if not self._queue and not self._sending:
            return True
        self._idle.clear()
        self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=max(0.0, within_s))
        except TimeoutError:
            return False
        return True

    def discard(self) -> list[Line]:
        """Empty the queue (at the end of a shutdown); the lines that will never be sent."""
        lines = [item[2] for item in sorted(self._queue)]
        self._queue.clear()
        self._idle.set()
        for line in lines:
            self._dropped(line, "shutdown")
        return lines


def _merged(head: Line, parts: list[Line], text: str) -> Line:
    """One line that carries ``parts`` (``head`` first): sending it tells each part it was sent."""
    if len(parts) == 1 and head.render is None:
        return head
    callbacks = [part.on_sent for part in parts if part.on_sent is not None]

    def sent(at: float) -> None:
        for callback in callbacks:
            callback(at)

    return Line(
        text=text,
        kind=head.kind,
        priority=head.priority,
        on_sent=sent,
        mentions=tuple(mention for part in parts for mention in part.mentions),
    )
