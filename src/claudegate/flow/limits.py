"""The account's limits as the gateway sees them: requests, input and output tokens per minute for each
upstream and model class, corrected from the ``anthropic-ratelimit-*`` headers of every reply.

The tier table is where the picture starts; the headers are where it is kept true. A reported limit that
differs from the configured one replaces it (the account was moved to another tier, or a workspace limit
applies), and a reported ``remaining`` lowers the local level, so other clients sharing the account are
accounted for too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from claudegate.flow.state import BucketSpec, FlowState
from claudegate.wire.tiers import Limits, limits_for

__all__ = ["LaneLimits", "Lanes", "parse_ratelimit_headers"]

_HEADER_PREFIX = "anthropic-ratelimit-"
_KINDS = {"requests": "requests", "input-tokens": "input", "output-tokens": "output"}


@dataclass(slots=True)
class LaneLimits:
    """Limits of one lane (an upstream and a model class) and the buckets that enforce them."""

    lane: str
    requests: BucketSpec
    input_tokens: BucketSpec
    output_tokens: BucketSpec
    # Limits the operator set in numbers (rather than a tier): an upstream may lower them, never raise them,
    # since they may deliberately leave part of the account to other applications.
    configured: bool = False

    @classmethod
    def from_limits(cls, lane: str, limits: Limits, burst: float, *, configured: bool = False) -> LaneLimits:
        return cls(
            lane,
            BucketSpec.per_minute(f"lane:{lane}:requests", limits.requests_per_minute, burst),
            BucketSpec.per_minute(f"lane:{lane}:input", limits.input_tokens_per_minute, burst),
            BucketSpec.per_minute(f"lane:{lane}:output", limits.output_tokens_per_minute, burst),
            configured=configured,
        )

    def spec(self, kind: str) -> BucketSpec:
        return {"requests": self.requests, "input": self.input_tokens, "output": self.output_tokens}[kind]

    def demands(self, input_tokens: float, output_tokens: float) -> list[tuple[BucketSpec, float]]:
        return [(self.requests, 1), (self.input_tokens, input_tokens), (self.output_tokens, output_tokens)]


def parse_ratelimit_headers(headers: Mapping[str, str]) -> dict[str, tuple[int | None, int | None]]:
    """``{"requests"|"input"|"output": (limit, remaining)}`` from a reply's rate-limit headers."""
    found: dict[str, tuple[int | None, int | None]] = {}
    for header_kind, kind in _KINDS.items():
        limit = _int(headers.get(f"{_HEADER_PREFIX}{header_kind}-limit"))
        remaining = _int(headers.get(f"{_HEADER_PREFIX}{header_kind}-remaining"))
        if limit is not None or remaining is not None:
            found[kind] = (limit, remaining)
    return found


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


class Lanes:
    """Every lane's limits, created from the upstream's tier (or explicit numbers) on first use."""

    def __init__(self, state: FlowState, *, burst: float = 1.0) -> None:
        self._state = state
        self._burst = burst
        self._lanes: dict[str, LaneLimits] = {}

    @property
    def state(self) -> FlowState:
        return self._state

    def forget(self, upstream: str) -> None:
        """Drop the lanes of ``upstream`` (its tier or limits changed): the next call makes them anew."""
        for lane in [name for name in self._lanes if name.startswith(f"{upstream}:")]:
            del self._lanes[lane]

    async def refund(self, lane: LaneLimits, input_tokens: float, output_tokens: float) -> None:
        """Give back the tokens reserved for a call the upstream did not serve (the request still counts)."""
        await self.settle(lane, -input_tokens, -output_tokens)

    async def settle(self, lane: LaneLimits, input_difference: float, output_difference: float) -> None:
        """Replace a reservation by the real count: charge (or give back) the difference."""
        if input_difference:
            await self._state.charge(lane.input_tokens, input_difference)
        if output_difference:
            await self._state.charge(lane.output_tokens, output_difference)

    def get(self, upstream: str, rate_class: str, *, tier: str, limits: Limits | None = None) -> LaneLimits:
        lane = f"{upstream}:{rate_class}"
        found = self._lanes.get(lane)
        if found is None:
            found = LaneLimits.from_limits(
                lane, limits or limits_for(tier, rate_class), self._burst, configured=limits is not None
            )
            self._lanes[lane] = found
        return found

    async def correct(self, lane: LaneLimits, headers: Mapping[str, str], age_s: float = 0.0) -> None:
        """Follow the real account: adopt reported limits, and lower levels to what it says remains.

        ``age_s`` is how long the reply took to come back: the upstream counted what remains at some moment
        since the request was sent, and its buckets have refilled since then for at most that long.
        """
        for kind, (limit, remaining) in parse_ratelimit_headers(headers).items():
            spec = lane.spec(kind)
            current = spec.rate * 60
            changed = limit is not None and limit > 0 and abs(limit - current) > 0.5
            # Numbers the operator set stay unless the account reports less (see LaneLimits.configured).
            if limit is not None and changed and not (lane.configured and limit > current):
                spec = BucketSpec.per_minute(spec.key, limit, self._burst)
                if kind == "requests":
                    lane.requests = spec
                elif kind == "input":
                    lane.input_tokens = spec
                else:
                    lane.output_tokens = spec
            if remaining is not None:
                # Token counts are rounded to the nearest thousand upstream and requests down to a whole
                # one, counted when the request arrived, up to age_s ago: allow for both before lowering, or
                # every reply would pull a correct local picture down (by a whole call's refill for a long
                # call), and calls admitted on the predicted refill would then miss their deadlines.
                slack = 500 if kind != "requests" else 1
                await self._state.observe(spec, remaining + slack + spec.rate * max(0.0, age_s))
