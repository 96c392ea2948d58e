"""Outgoing lines paced to Twitch's limits, driven by a fake clock through Outbox.poll/sent."""

from __future__ import annotations

import math
from collections.abc import Callable

from claudegate.bots.outbox import (
    PRIORITY_ANSWER,
    PRIORITY_CHATTER,
    PRIORITY_NOTICE,
    Hold,
    Line,
    Outbox,
    Packing,
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


def packing_outbox(limit: int = 2, hold: Hold | None = None) -> tuple[Outbox, FakeClock]:
    clock = FakeClock()
    outbox = Outbox(
        FakeTransport(),
        limit=limit,
        window_s=30,
        clock=clock,
        packing={"answer": Packing(separator=" | "), "wait": Packing(separator=", ", lead="in about: ")},
        hold=hold,
    )
    return outbox, clock


def test_whole_answers_share_a_line_up_to_500_characters_in_their_order() -> None:
    outbox, clock = packing_outbox()
    sent_at: dict[str, float] = {}
    texts = [f"@v{i} " + chr(ord("a") + i) * 150 for i in range(5)]  # three fit one line, not four
    for text in texts:
        outbox.put(
            Line(
                text,
                packable=True,
                mentions=(text.split()[0],),
                on_sent=lambda at, t=text: sent_at.setdefault(t, at),
            )
        )
    sent = drain(outbox, clock, until=0)
    assert [t for _at, t in sent] == [" | ".join(texts[:3]), " | ".join(texts[3:])]
    assert all(len(t) <= 500 for _at, t in sent)
    assert sent_at == dict.fromkeys(texts, 0.0)  # every part hears that its line went


def test_a_part_too_long_for_the_line_waits_for_the_next_and_shorter_ones_fill_in() -> None:
    outbox, clock = packing_outbox()
    long, short, longer = "@a " + "x" * 300, "@b " + "y" * 100, "@c " + "z" * 300
    for text in (long, longer, short):
        outbox.put(Line(text, packable=True))
    sent = [t for _at, t in drain(outbox, clock, until=0)]
    assert sent == [f"{long} | {short}", longer]  # never cut: the long one keeps its whole text


def test_a_hold_keeps_a_line_back_for_more_parts() -> None:
    holds: list[tuple[float, int, int]] = []

    def hold(now: float, parts: int, chars: int) -> float:
        holds.append((now, parts, chars))
        return 0.0 if parts >= 2 else 0.5

    outbox, _clock = packing_outbox(hold=hold)
    outbox.put(Line("@a first", packable=True))
    assert outbox.poll(0.0) == (None, 0.5)
    outbox.put(Line("@b second", packable=True))
    line, _wait = outbox.poll(0.2)
    assert line is not None
    assert line.text == "@a first | @b second"
    assert holds == [(0.0, 1, 8), (0.2, 2, 20)]


def test_a_notice_is_written_when_sent_and_dropped_when_its_news_is_stale() -> None:
    dropped: list[str] = []
    clock = FakeClock()
    outbox = Outbox(
        FakeTransport(),
        limit=1,
        window_s=30,
        clock=clock,
        packing={"wait": Packing(separator=", ", lead="in about: ")},
        on_dropped=lambda _line, why: dropped.append(why),
    )
    due = {"@a": 40.0, "@b": 45.0}

    def render(mention: str) -> Callable[[float], str | None]:
        return lambda now: None if due[mention] - now < 1 else f"{mention} {round(due[mention] - now)} s"

    outbox.put(Line("an answer"))
    for mention in due:
        outbox.put(Line(mention, kind="wait", packable=True, render=render(mention)))
    assert [t for _at, t in drain(outbox, clock, until=0)] == ["an answer"]
    clock.now = 30.0  # the next slot: each told their own wait as predicted now
    assert [t for _at, t in drain(outbox, clock, until=30)] == ["in about: @a 10 s, @b 15 s"]
    outbox.put(Line("@c", kind="wait", packable=True, render=lambda now: None))
    assert drain(outbox, clock, until=100) == []
    assert dropped == ["stale"]
