"""Each viewer's own wait, told once within two seconds when the answer will not come by then, and again only
when it gets worse by more than the margin a told wait is judged by; driven by a fake clock."""

from __future__ import annotations

from claudegate.bots.outbox import Line, Outbox
from claudegate.bots.pacing import Upcoming
from claudegate.bots.transport import ChatMessage
from claudegate.bots.waits import Asker, WaitTeller, worse_by
from tests.unit.test_bot_outbox import FakeClock, FakeTransport, drain


def setup(limit: int = 19) -> tuple[WaitTeller, Outbox, FakeClock, list[tuple[str, float]]]:
    clock = FakeClock()
    outbox = Outbox(FakeTransport(), limit=limit, window_s=30.0, clock=clock)
    told: list[tuple[str, float]] = []
    teller = WaitTeller(
        outbox, ack_after_s=1.5, notice_after_s=1.75, on_told=lambda a, at: told.append((a.message.login, at))
    )
    return teller, outbox, clock, told


def asker(login: str, at: float = 0.0) -> Asker:
    return Asker(ChatMessage(channel="c", login=login, text="!ask q"), at)


def sent(outbox: Outbox, clock: FakeClock) -> list[str]:
    return [text for _at, text in drain(outbox, clock, until=clock.now)]


def test_a_late_answer_is_told_once_with_the_viewers_own_wait() -> None:
    teller, outbox, clock, told = setup()
    alice, bob = asker("alice"), asker("bob", 0.2)
    answers = [(Upcoming(10.0, 80), [alice]), (Upcoming(20.0, 80), [bob])]
    clock.now = 1.0
    teller.review(clock.now, answers, notices_first=0, hold_s=0.0, reserved=0)
    assert sent(outbox, clock) == []  # too early: the answer might still come within two seconds
    clock.now = 1.5
    teller.review(clock.now, answers, notices_first=0, hold_s=0.0, reserved=0)
    # bob is 1.3 s in: he would be told at the next review, so he rides on alice's line.
    assert sent(outbox, clock) == ["answers coming in about: @alice 9 s, @bob 19 s"]
    assert told == [("alice", 1.5), ("bob", 1.5)]
    assert (alice.promised, alice.told_s) == (10.5, 9)
    clock.now = 3.0
    teller.review(clock.now, answers, notices_first=0, hold_s=0.0, reserved=0)
    assert sent(outbox, clock) == []  # told once


def test_an_answer_due_within_a_couple_of_seconds_gets_no_notice() -> None:
    teller, outbox, clock, _told = setup()
    clock.now = 1.5
    teller.review(clock.now, [(Upcoming(1.7, 80), [asker("carol")])], notices_first=0, hold_s=0.0, reserved=0)
    assert sent(outbox, clock) == []


def test_told_again_only_when_clearly_worse() -> None:
    teller, outbox, clock, _told = setup()
    dave = asker("dave")
    clock.now = 1.5
    teller.review(clock.now, [(Upcoming(11.5, 80), [dave])], notices_first=0, hold_s=0.0, reserved=0)
    assert sent(outbox, clock) == ["answers coming in about: @dave 10 s"]
    assert worse_by(10) == 3.0
    clock.now = 3.0
    teller.review(clock.now, [(Upcoming(14.0, 80), [dave])], notices_first=0, hold_s=0.0, reserved=0)
    assert sent(outbox, clock) == []  # 2.5 s later than told: within the margin
    teller.review(clock.now, [(Upcoming(15.0, 80), [dave])], notices_first=0, hold_s=0.0, reserved=0)
    assert sent(outbox, clock) == ["answers coming in about: @dave 12 s"]


def test_a_notice_not_sent_before_the_answer_is_dropped() -> None:
    teller, outbox, clock, _told = setup(limit=1)
    outbox.put(Line("@someone an answer"))
    erin = asker("erin")
    clock.now = 1.5
    teller.review(clock.now, [(Upcoming(40.0, 80), [erin])], notices_first=0, hold_s=0.0, reserved=0)
    assert sent(outbox, clock) == ["answers coming in about: @erin 39 s"]  # notices go first
    frank = asker("frank", 1.0)
    clock.now = 2.5
    teller.review(clock.now, [(Upcoming(40.0, 80), [frank])], notices_first=0, hold_s=0.0, reserved=0)
    frank.finished = True  # the answer went another way before the window let the notice out
    clock.now = 31.0
    assert [text for _at, text in drain(outbox, clock, until=40)] == ["@someone an answer"]


def test_a_viewer_whose_answer_is_not_back_from_the_model_is_told_before_two_seconds() -> None:
    teller, outbox, clock, _told = setup()
    gina, hugo = asker("gina"), asker("hugo")
    hugo.ready = True  # the model answered: his line is only waiting its turn, about to go
    clock.now = 1.7
    answers = [(Upcoming(1.8, 80), [gina]), (Upcoming(1.8, 80), [hugo])]
    teller.review(clock.now, answers, notices_first=0, hold_s=0.0, reserved=0)
    assert sent(outbox, clock) == []  # predicted within a couple of seconds
    clock.now = 1.8  # and yet gina's answer is not back: she hears the best prediction there is
    answers = [(Upcoming(2.3, 80), [gina]), (Upcoming(1.8, 80), [hugo])]
    teller.review(clock.now, answers, notices_first=0, hold_s=0.0, reserved=0)
    assert sent(outbox, clock) == ["answers coming in about: @gina 1 s"]
