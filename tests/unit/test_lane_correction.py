"""Correcting a lane from a reply's rate-limit headers: a reading lowers the lane's buckets to what can be
left upstream now, allowing for the upstream's rounding and for the refill since it counted."""

from __future__ import annotations

import pytest

from claudegate.flow.limits import Lanes
from claudegate.flow.state import MemoryState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def headers(remaining_requests: int) -> dict[str, str]:
    return {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": str(remaining_requests),
    }


async def test_a_reading_as_old_as_the_reply_does_not_undo_the_refill_since() -> None:
    clock = Clock()
    state = MemoryState(clock)
    lanes = Lanes(state)
    lane = lanes.get("up", "sonnet-4", tier="1")  # 50 requests a minute
    await state.charge(lane.requests, 50)
    clock.now += 3.0  # the call took 3 s: 2.5 requests refilled meanwhile

    # Upstream counted 0 remaining when the call arrived, 3 s ago; the refill since is real.
    await lanes.correct(lane, headers(0), age_s=3.0)
    assert (await state.levels([lane.requests]))[0] == pytest.approx(2.5)


async def test_a_fresh_reading_lowers_the_lane_to_it_allowing_for_rounding() -> None:
    clock = Clock()
    state = MemoryState(clock)
    lanes = Lanes(state)
    lane = lanes.get("up", "sonnet-4", tier="1")

    # Others spent the account: upstream has 10 left (rounded down), the lane believed 50.
    await lanes.correct(lane, headers(10), age_s=0.0)
    assert (await state.levels([lane.requests]))[0] == pytest.approx(11)
