from __future__ import annotations

from claudegate.bots.cooldown import Cooldowns


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_question_per_viewer_per_period() -> None:
    clock = FakeClock()
    cooldowns = Cooldowns(60, clock=clock)
    assert cooldowns.remaining("alice") == 0
    cooldowns.start("alice")
    clock.now += 18
    assert cooldowns.remaining("alice") == 42
    assert cooldowns.remaining("bob") == 0
    clock.now += 42
    assert cooldowns.remaining("alice") == 0


def test_a_period_can_be_set_for_one_viewer_or_cleared() -> None:
    clock = FakeClock()
    cooldowns = Cooldowns(60, clock=clock)
    cooldowns.start("alice", 5)
    assert cooldowns.remaining("alice") == 5
    cooldowns.start("bob")
    cooldowns.clear("bob")
    assert cooldowns.remaining("bob") == 0
    cooldowns.start("carol", 0)
    assert cooldowns.remaining("carol") == 0


def test_expired_entries_are_swept() -> None:
    clock = FakeClock()
    cooldowns = Cooldowns(1, clock=clock)
    for i in range(5000):
        cooldowns.start(f"viewer{i}")
        clock.now += 0.01
    assert len(cooldowns) < 1200
