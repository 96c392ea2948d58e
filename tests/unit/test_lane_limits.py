"""How the lane's limits follow the account's rate-limit headers."""

from __future__ import annotations

from claudegate.flow.limits import Lanes
from claudegate.flow.state import MemoryState
from claudegate.wire.tiers import Limits


def headers(requests_limit: int, remaining: int) -> dict[str, str]:
    return {
        "anthropic-ratelimit-requests-limit": str(requests_limit),
        "anthropic-ratelimit-requests-remaining": str(remaining),
    }


async def test_a_tier_lane_adopts_the_limit_the_account_reports() -> None:
    lanes = Lanes(MemoryState())
    lane = lanes.get("anthropic", "sonnet-4", tier="1")
    assert round(lane.requests.rate * 60) == 50
    await lanes.correct(lane, headers(1000, 990))
    assert round(lane.requests.rate * 60) == 1000


async def test_numbers_set_by_the_operator_are_lowered_but_never_raised() -> None:
    lanes = Lanes(MemoryState())
    lane = lanes.get("main", "sonnet-4", tier="4", limits=Limits(100, 100_000, 20_000))
    await lanes.correct(lane, headers(4000, 3990))
    assert round(lane.requests.rate * 60) == 100  # the operator leaves the rest of the account to others
    await lanes.correct(lane, headers(60, 50))
    assert round(lane.requests.rate * 60) == 60  # but the account cannot do more than it says


async def test_remaining_lowers_the_local_level() -> None:
    state = MemoryState()
    lanes = Lanes(state)
    lane = lanes.get("anthropic", "sonnet-4", tier="2")
    await lanes.correct(lane, headers(1000, 10))
    level = (await state.levels([lane.requests]))[0]
    assert level <= 12  # what the account says remains, plus rounding slack
