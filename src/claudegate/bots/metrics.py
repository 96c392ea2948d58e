"""The bot's Prometheus metrics, in a registry of their own (a process may run a gateway too).

Besides the answer-time histogram (good for aggregation across processes), the answer time's p50, p90 and
p99 over recent answers are exported as a summary: a histogram's quantiles are only as fine as its buckets,
and an operator watching a stream wants "what did the last few hundred viewers wait", not an interpolation.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

__all__ = ["QUANTILES", "BotMetrics", "RecentValues", "quantile"]

QUANTILES = (0.5, 0.9, 0.99)
_TIME_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0)


def quantile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of already sorted values (nan when there are none)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class RecentValues:
    """The last ``max_items`` values seen within ``window_s``."""

    __slots__ = ("_clock", "_items", "window_s")

    def __init__(
        self, *, max_items: int = 1000, window_s: float = 600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._items: deque[tuple[float, float]] = deque(maxlen=max_items)
        self.window_s = window_s
        self._clock = clock

    def add(self, value: float) -> None:
        self._items.append((self._clock(), value))

    def values(self) -> list[float]:
        cutoff = self._clock() - self.window_s
        while self._items and self._items[0][0] < cutoff:
            self._items.popleft()
        return [value for _at, value in self._items]

    def quantiles(self, qs: Iterable[float] = QUANTILES) -> dict[float, float]:
        ordered = sorted(self.values())
        return {q: quantile(ordered, q) for q in qs}


class _RecentSummary(Collector):
    """Exports a RecentValues as a summary with quantile samples."""

    def __init__(self, name: str, documentation: str, recent: RecentValues) -> None:
        self._name = name
        self._documentation = documentation
        self._recent = recent

    def collect(self) -> Iterable[Metric]:
        values = sorted(self._recent.values())
        metric = Metric(self._name, self._documentation, "summary")
        for q in QUANTILES:
            metric.add_sample(self._name, {"quantile": str(q)}, quantile(values, q))
        metric.add_sample(self._name + "_count", {}, float(len(values)))
        metric.add_sample(self._name + "_sum", {}, float(sum(values)))
        return [metric]


class BotMetrics:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic, window_s: float = 60.0) -> None:
        self._clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.questions = Counter(
            "claudegate_bot_questions_total",
            "Questions by outcome: answered, busy, slow, trouble, shutdown (accepted); cooldown, invalid, "
            "closing (turned away); deduplicated counts questions that joined one already in progress.",
            ["outcome"],
            registry=registry,
        )
        self.answer_seconds = Histogram(
            "claudegate_bot_answer_seconds",
            "Time from a question to the chat line that answers it.",
            buckets=_TIME_BUCKETS,
            registry=registry,
        )
        self.first_reply_seconds = Histogram(
            "claudegate_bot_first_reply_seconds",
            "Time from a question to the first line to its viewer (answer, wait notice or apology).",
            buckets=_TIME_BUCKETS,
            registry=registry,
        )
        self.lines_sent = Counter(
            "claudegate_bot_chat_lines_total", "Chat lines sent, by kind.", ["kind"], registry=registry
        )
        self.lines_dropped = Counter(
            "claudegate_bot_chat_lines_dropped_total",
            "Chat lines not sent: duplicate (same text within 30 s), expired, shutdown.",
            ["reason"],
            registry=registry,
        )
        self.reconnects = Counter(
            "claudegate_bot_reconnects_total", "Reconnections to the chat server.", registry=registry
        )
        self.pending = Gauge(
            "claudegate_bot_pending_questions", "Questions accepted and not yet answered.", registry=registry
        )
        self.outbox_backlog = Gauge(
            "claudegate_bot_outbox_lines", "Chat lines waiting for the message limit.", registry=registry
        )
        self.connected = Gauge(
            "claudegate_bot_chat_connected", "1 while joined to the channel.", registry=registry
        )
        self.health = Gauge("claudegate_bot_health", "0 healthy, 1 degraded, 2 unhealthy.", registry=registry)
        self.recent_answers = RecentValues(clock=clock)
        registry.register(
            _RecentSummary(
                "claudegate_bot_recent_answer_seconds",
                "Time from a question to its answer line over the last 1,000 answers (10 minutes at most).",
                self.recent_answers,
            )
        )
        self._outcomes: deque[tuple[float, bool]] = deque(maxlen=10_000)
        self.window_s = window_s

    def observe_answer(self, seconds: float) -> None:
        self.answer_seconds.observe(seconds)
        self.recent_answers.add(seconds)

    def outcome(self, outcome: str, *, count: bool = True) -> None:
        """Count a question's outcome; answered and failed ones also feed the error rate."""
        self.questions.labels(outcome).inc()
        if count and outcome in ("answered", "busy", "slow", "trouble"):
            self._outcomes.append((self._clock(), outcome == "answered"))

    def error_rate(self) -> float:
        """Share of recent accepted questions that were not answered (0 when there were none)."""
        cutoff = self._clock() - self.window_s
        while self._outcomes and self._outcomes[0][0] < cutoff:
            self._outcomes.popleft()
        if not self._outcomes:
            return 0.0
        failed = sum(1 for _at, ok in self._outcomes if not ok)
        return failed / len(self._outcomes)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
