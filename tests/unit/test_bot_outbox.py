"""Outgoing lines paced to Twitch's limits, driven by a fake clock through Outbox.poll/sent."""

from __future__ import annotations

import math

from claudegate.bots.outbox import (
    PRIORITY_ANSWER,
    PRIORITY_CHATTER,
    PRIORITY_NOTICE,
    Line,
    Outbox,
    SlidingWindow,
)
from claudegate.bots.transport import TransportUnavailable


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.connected = True

    async def run(self, handler: object) -> None:  # pragma: no cover - not used here
        return None

    async def wait_connected(self) -> None:
        return None

    async def send(self, text: str) -> None:
        if not self.connected:
            raise TransportUnavailable("down")
        self.sent.append(text)

    async def close(self) -> None:
        return None


def drain(outbox: Outbox, clock: FakeClock, until: float) -> list[tuple[float, str]]:
    """Send everything the outbox lets out until ``until``, moving the clock as the loop would sleep."""
    sent: list[tuple[float, str]] = []
    while clock.now <= until:
        line, wait = outbox.poll(clock.now)
        if line is not None:
            outbox.sent(line, clock.now)
            sent.append((clock.now, line.text))
            continue
        if math.isinf(wait):
            break
        clock.now += wait
    return sent


def make(limit: int = 19, window: float = 30.0) -> tuple[Outbox, FakeClock]:
    clock = FakeClock()
    return Outbox(FakeTransport(), limit=limit, window_s=window, clock=clock), clock


def test_sliding_window_allows_limit_per_window() -> None:
    window = SlidingWindow(3, 30.0)
    for at in (0.0, 1.0, 2.0):
        assert window.delay(at) == 0
        window.record(at)
    assert window.delay(2.0) == 28.0
    assert window.delay(30.0) == 0  # the first send left the window
    window.record(30.0)
    assert window.delay(30.5) == 0.5


def test_a_burst_is_sent_up_to_the_limit_then_paced_by_the_window() -> None:
    outbox, clock = make(limit=19)
    for i in range(40):
        outbox.put(Line(f"@v{i} answer"))
    sent = drain(outbox, clock, until=100)
    times = [at for at, _text in sent]
    assert len(sent) == 40
    assert times[:19] == [0.0] * 19
    assert times[19:38] == [30.0] * 19
    assert times[38:] == [60.0] * 2
    # Never more than the limit in any 30-second window.
    for i, at in enumerate(times):
        assert sum(1 for other in times[i:] if other < at + 30) <= 19


def test_the_same_text_is_not_sent_twice_within_the_duplicate_window() -> None:
    outbox, clock = make()
    outbox.put(Line("@alice you can ask again in 42 s."))
    assert [t for _at, t in drain(outbox, clock, until=0)] == ["@alice you can ask again in 42 s."]
    clock.now = 29.0
    outbox.put(Line("@alice you can ask again in 42 s."))
    assert drain(outbox, clock, until=29) == []
    clock.now = 30.5
    outbox.put(Line("@alice you can ask again in 42 s."))
    assert len(drain(outbox, clock, until=31)) == 1


def test_notices_go_before_answers_and_chatter_last() -> None:
    outbox, clock = make()
    outbox.put(Line("chatter", priority=PRIORITY_CHATTER))
    outbox.put(Line("answer 1", priority=PRIORITY_ANSWER))
    outbox.put(Line("notice", priority=PRIORITY_NOTICE))
    outbox.put(Line("answer 2", priority=PRIORITY_ANSWER))
    assert [t for _at, t in drain(outbox, clock, until=0)] == ["notice", "answer 1", "answer 2", "chatter"]


def test_lines_held_back_past_their_expiry_are_dropped() -> None:
    dropped: list[tuple[str, str]] = []
    clock = FakeClock()
    outbox = Outbox(
        FakeTransport(),
        limit=1,
        window_s=30,
        clock=clock,
        on_dropped=lambda line, why: dropped.append((line.text, why)),
    )
    outbox.put(Line("first"))
    outbox.put(Line("stale notice", expires_at=5.0))
    outbox.put(Line("answer"))
    sent = drain(outbox, clock, until=100)
    assert [t for _at, t in sent] == ["first", "answer"]
    assert dropped == [("stale notice", "expired")]


def test_pause_holds_every_line() -> None:
    outbox, clock = make()
    outbox.pause(10)
    outbox.put(Line("x"))
    line, wait = outbox.poll(0.0)
    assert line is None
    assert wait == 10
    assert [at for at, _t in drain(outbox, clock, until=20)] == [10.0]


async def test_the_loop_sends_and_flush_waits_for_the_queue() -> None:
    import asyncio

    transport = FakeTransport()
    outbox = Outbox(transport, limit=100, window_s=30)
    task = asyncio.get_running_loop().create_task(outbox.run())
    try:
        for i in range(5):
            outbox.put(Line(f"line {i}"))
        assert await outbox.flush(1.0)
        assert transport.sent == [f"line {i}" for i in range(5)]
    finally:
        task.cancel()


def test_the_last_send_of_a_window_may_carry_a_notice_instead() -> None:
    clock = FakeClock()
    asked: list[tuple[float, float]] = []

    def last_slot(now: float, wait: float) -> Line | None:
        asked.append((now, wait))
        return Line("@a @b your answers wait for the chat limit", kind="held")

    outbox = Outbox(FakeTransport(), limit=3, window_s=30, clock=clock, last_slot=last_slot)
    for name in "abcd":
        outbox.put(Line(f"@{name} answer"))
    sent = drain(outbox, clock, until=40)
    assert [t for _at, t in sent] == [
        "@a answer",
        "@b answer",
        "@a @b your answers wait for the chat limit",
        "@c answer",
        "@d answer",
    ]
    assert asked[0] == (0.0, 30.0)
    assert [at for at, _t in sent] == [0.0, 0.0, 0.0, 30.0, 30.0]
