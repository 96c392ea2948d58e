"""Per-key, per-user and per-organisation limits: requests and tokens per minute, and concurrent calls.

They are checked before a call joins an upstream's queue, so a tenant over its own limit waits (or is
refused, when its deadline is too close) without holding up anyone else's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from claudegate.errors import RateLimitError
from claudegate.flow.state import BucketSpec, FlowState
from claudegate.keys import Identity, LimitSet

__all__ = ["TenantGate", "TenantPass"]

_SLOT_POLL_S = 0.05


@dataclass(slots=True)
class TenantPass:
    """What a call took from its tenants' limits, settled with the real token count when it ends."""

    token_buckets: list[BucketSpec] = field(default_factory=list)
    estimated_tokens: float = 0.0


class TenantGate:
    def __init__(self, state: FlowState, clock: Callable[[], float] = time.monotonic) -> None:
        self._state = state
        self._clock = clock

    @contextlib.asynccontextmanager
    async def hold(
        self, identity: Identity, estimated_tokens: float, deadline: float
    ) -> AsyncIterator[TenantPass]:
        """Wait for the tenants' buckets and concurrency slots (or refuse at once if the deadline is too
        near); release the slots when the call ends."""
        settings = identity.settings
        scopes: list[tuple[str, str, LimitSet]] = [("key", str(identity.key_id), settings.key)]
        if identity.user_id is not None:
            scopes.append(("user", str(identity.user_id), settings.user))
        scopes.append(("organisation", str(identity.org_id), settings.org))

        taken = TenantPass(estimated_tokens=estimated_tokens)
        demands: list[tuple[BucketSpec, float]] = []
        for scope, ident, limits in scopes:
            if limits.requests_per_minute:
                demands.append(
                    (BucketSpec.per_minute(f"{scope}:{ident}:requests", limits.requests_per_minute), 1)
                )
            if limits.tokens_per_minute:
                spec = BucketSpec.per_minute(f"{scope}:{ident}:tokens", limits.tokens_per_minute)
                demands.append((spec, min(estimated_tokens, spec.capacity)))
                taken.token_buckets.append(spec)
        if demands:
            await self._take(demands, deadline, scopes)

        held: list[str] = []
        try:
            for scope, ident, limits in scopes:
                if limits.max_concurrency:
                    slot = f"{scope}:{ident}"
                    await self._acquire(slot, limits.max_concurrency, deadline, scope)
                    held.append(slot)
            yield taken
        finally:
            for slot in held:
                await self._state.release(slot)

    async def settle(self, taken: TenantPass, actual_tokens: float) -> None:
        difference = actual_tokens - taken.estimated_tokens
        if difference:
            for spec in taken.token_buckets:
                await self._state.charge(spec, difference)

    async def _take(
        self,
        demands: list[tuple[BucketSpec, float]],
        deadline: float,
        scopes: list[tuple[str, str, LimitSet]],
    ) -> None:
        while True:
            wait = await self._state.try_take(demands)
            if wait == 0:
                return
            now = self._clock()
            if math.isinf(wait) or now + wait > deadline:
                names = ", ".join(scope for scope, _, limits in scopes if not limits.is_unlimited)
                raise RateLimitError(
                    f"claudegate: this call would exceed the per-minute limits of its {names} before its "
                    f"deadline; retry in {wait if math.isfinite(wait) else 60:.1f} s",
                    retry_after=max(1.0, math.ceil(wait if math.isfinite(wait) else 60)),
                )
            await asyncio.sleep(wait)

    async def _acquire(self, slot: str, limit: int, deadline: float, scope: str) -> None:
        while not await self._state.acquire(slot, limit):
            if self._clock() + _SLOT_POLL_S > deadline:
                raise RateLimitError(
                    f"claudegate: the {scope} already has {limit} calls in flight, its limit; retry when one "
                    "ends",
                    retry_after=1,
                )
            await asyncio.sleep(_SLOT_POLL_S)
