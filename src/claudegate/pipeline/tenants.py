"""Per-key, per-user and per-organisation limits: requests and tokens per minute, and concurrent calls.

They are checked before a call joins an upstream's queue, so a tenant over its own limit waits (or is
refused, when its deadline is too close) without holding up anyone else's calls. What a call takes is a
``TenantHold``: settled once, with the tokens the upstream really charged, when the call ends. A call
refused or abandoned before any upstream served it keeps nothing: its requests, tokens and slots go back.

Every wait takes its time from the event loop: a bucket's refill is a timer, and a call waiting for a
concurrency slot waits on a future that the end of another call of the same tenant in this process resolves
at once (``slots.SlotWaiters``).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from claudegate.errors import RateLimitError
from claudegate.flow.state import BucketSpec, FlowState, MemoryState
from claudegate.keys import Identity, LimitSet
from claudegate.pipeline.cancel_safe import may_be_cut_short, take_or_give_back
from claudegate.pipeline.slots import SlotWaiters

__all__ = ["TenantGate", "TenantHold"]

# How often the first call waiting for a tenant's slot looks again when the slots are shared with other
# gateway processes (Redis): a slot they free wakes nobody here, so a bounded re-check finds it.
SHARED_SLOT_RECHECK_S = 0.1


@dataclass(eq=False, slots=True)
class TenantHold:
    """What a call took from its tenants' limits."""

    taken: list[tuple[BucketSpec, float]] = field(default_factory=list)  # every bucket and its amount
    token_buckets: list[BucketSpec] = field(default_factory=list)
    estimated_tokens: float = 0.0
    slots: list[str] = field(default_factory=list)
    settled: bool = False


class TenantGate:
    def __init__(self, state: FlowState, *, shared: bool | None = None) -> None:
        """``shared``: other processes use the same slots (None: unless ``state`` is this process's own)."""
        self._state = state
        self._guarded = may_be_cut_short(state)
        # Slots in this process's memory are freed only here, so a freed slot always wakes its waiter;
        # shared ones may be freed by another process, which is what the re-check is for.
        if shared is None:
            shared = not isinstance(state, MemoryState)
        self._slots = SlotWaiters(state, recheck_s=SHARED_SLOT_RECHECK_S if shared else None)

    def waiting(self, slot: str) -> int:
        """Calls of this process waiting for one of ``slot``'s concurrency slots (``key:3``, ...)."""
        return self._slots.waiting(slot)

    async def take(self, identity: Identity, estimated_tokens: float, deadline: float) -> TenantHold:
        """Take the tenants' requests, tokens and a concurrency slot of each, waiting for them until
        ``deadline`` (on the event loop's clock); raise RateLimitError, holding nothing, when they cannot be
        had in time. Cancelled while waiting, it holds nothing either, even when cancelled in the middle of a
        round trip to shared state that took something (``cancel_safe``)."""
        hold = TenantHold(estimated_tokens=estimated_tokens)
        settings = identity.settings
        if settings.key.is_unlimited and settings.user.is_unlimited and settings.org.is_unlimited:
            return hold  # most keys: nothing to take
        scopes = _scopes(identity)
        for scope, ident, limits in scopes:
            if limits.requests_per_minute:
                spec = BucketSpec.per_minute(f"{scope}:{ident}:requests", limits.requests_per_minute)
                hold.taken.append((spec, 1))
            if limits.tokens_per_minute:
                spec = BucketSpec.per_minute(f"{scope}:{ident}:tokens", limits.tokens_per_minute)
                hold.taken.append((spec, min(estimated_tokens, spec.capacity)))
                hold.token_buckets.append(spec)
        if hold.taken:
            await self._take_buckets(hold.taken, deadline, scopes)
        try:
            # Always in the same order (key, user, organisation), so two calls never each hold a slot the
            # other waits for.
            for scope, ident, limits in scopes:
                if limits.max_concurrency:
                    slot = f"{scope}:{ident}"
                    acquired = await self._slots.acquire(slot, limits.max_concurrency, deadline)
                    if not acquired:
                        raise RateLimitError(
                            f"claudegate: the {scope} already has {limits.max_concurrency} calls in flight, "
                            "its limit; retry when one ends",
                            retry_after=1,
                        )
                    hold.slots.append(slot)
        except BaseException:
            await self.settle(hold, 0.0, served=False)
            raise
        return hold

    async def settle(self, hold: TenantHold, actual_tokens: float, *, served: bool) -> None:
        """End the hold (once; later calls do nothing): the token buckets are charged what the upstream
        charged instead of the estimate, and the slots are freed. A call no upstream ``served`` also gets
        its requests back."""
        if hold.settled:
            return
        hold.settled = True
        if not hold.taken and not hold.slots:
            return  # a tenant without limits: nothing was taken
        try:
            if not served:
                for spec, amount in hold.taken:
                    if amount:
                        await self._state.charge(spec, -amount)
                actual_tokens = 0.0
            difference = actual_tokens - hold.estimated_tokens if served else 0.0
            if difference:
                for spec in hold.token_buckets:
                    await self._state.charge(spec, difference)
        finally:
            slots, hold.slots = hold.slots, []
            await self._slots.release(slots)

    async def _untake(self, demands: list[tuple[BucketSpec, float]], wait: float) -> None:
        """Give back what a cancelled ``try_take`` took (everything when it waited 0, else nothing)."""
        if wait == 0:
            for spec, amount in demands:
                if amount:
                    await self._state.charge(spec, -amount)

    async def _take_buckets(
        self,
        demands: list[tuple[BucketSpec, float]],
        deadline: float,
        scopes: list[tuple[str, str, LimitSet]],
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._guarded:
                wait = await take_or_give_back(
                    self._state.try_take(demands), lambda wait: self._untake(demands, wait)
                )
            else:
                wait = await self._state.try_take(demands)
            if wait == 0:
                return
            if math.isinf(wait) or loop.time() + wait > deadline:
                names = ", ".join(scope for scope, _, limits in scopes if not limits.is_unlimited)
                retry_in = wait if math.isfinite(wait) else 60.0
                raise RateLimitError(
                    f"claudegate: this call would exceed the per-minute limits of its {names} before its "
                    f"deadline; retry in {retry_in:.1f} s",
                    retry_after=max(1.0, math.ceil(retry_in)),
                )
            # The buckets refill at known rates: wake when they will hold enough (another process may take
            # first, through shared state: then this takes again and waits for the next refill).
            await asyncio.sleep(wait)


def _scopes(identity: Identity) -> list[tuple[str, str, LimitSet]]:
    settings = identity.settings
    scopes: list[tuple[str, str, LimitSet]] = [("key", str(identity.key_id), settings.key)]
    if identity.user_id is not None:
        scopes.append(("user", str(identity.user_id), settings.user))
    scopes.append(("organisation", str(identity.org_id), settings.org))
    return scopes
