"""Several upstreams: which one takes a call, and which are kept away while they fail.

Choice: only upstreams whose circuit breaker lets calls through are candidates. ``priority`` routing
prefers the lowest priority number and, among equals, the least loaded; ``round_robin`` rotates;
``least_load`` takes the one with the smallest share of its concurrency in use. A sticky key (a
conversation, or a prompt prefix) overrides rotation and load with rendezvous hashing, so related calls keep
landing on the same upstream and its prompt cache keeps hitting, and a failed upstream moves only its own
share of keys elsewhere. The caller receives all candidates in order of preference and falls over to the
next when the first cannot serve the call in time.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from claudegate.flow.breaker import BreakerState, CircuitBreaker
from claudegate.upstream.target import Upstream
from claudegate.wire.tiers import Limits

__all__ = ["PoolMember", "Routing", "UpstreamPool", "breaker_flag"]

Routing = Literal["priority", "round_robin", "least_load"]


@dataclass(eq=False, slots=True)
class PoolMember:
    upstream: Upstream
    breaker: CircuitBreaker
    priority: int = 0
    tier: str = "1"
    limits: Limits | None = None  # explicit numbers; None: the tier's table
    max_concurrency: int = 64
    in_flight: int = field(default=0)

    @property
    def name(self) -> str:
        return self.upstream.name

    @property
    def load(self) -> float:
        return self.in_flight / self.max_concurrency


class UpstreamPool:
    def __init__(
        self, members: Sequence[PoolMember], *, routing: Routing, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not members:
            raise ValueError("an upstream pool needs at least one upstream")
        names = [member.name for member in members]
        if len(set(names)) != len(names):
            raise ValueError(f"upstream names must be unique: {names}")
        self.members = list(members)
        self._routing = routing
        self._clock = clock
        self._turn = itertools.count()

    def replace(self, members: Sequence[PoolMember], routing: Routing) -> None:
        """Serve new calls from ``members`` (a live reload); calls in flight keep the member they hold."""
        if not members:
            raise ValueError("an upstream pool needs at least one upstream")
        names = [member.name for member in members]
        if len(set(names)) != len(names):
            raise ValueError(f"upstream names must be unique: {names}")
        self.members, self._routing = list(members), routing

    def get(self, name: str) -> PoolMember | None:
        return next((member for member in self.members if member.name == name), None)

    def candidates(self, sticky_key: str | None = None) -> list[PoolMember]:
        """Upstreams that may take a call now, the preferred first; empty when every breaker is open."""
        now = self._clock()
        usable = [member for member in self.members if member.breaker.state(now) is not BreakerState.OPEN]
        return self._order(usable, sticky_key)

    def last_resort(self) -> list[PoolMember]:
        """Every upstream, the one whose breaker reopens soonest first: for when all breakers are open.

        A breaker exists to move traffic to a healthy upstream. When there is none, refusing every call
        would turn a partial outage into a total one, so calls still go out (their own retries and
        deadlines bound the cost) and the first success closes the breaker.
        """
        now = self._clock()
        return sorted(self.members, key=lambda member: member.breaker.retry_in(now))

    def _order(self, usable: list[PoolMember], sticky_key: str | None) -> list[PoolMember]:
        if sticky_key is not None:
            scored = sorted(usable, key=lambda m: _rendezvous(sticky_key, m.name), reverse=True)
            if self._routing == "priority":
                return sorted(scored, key=lambda m: m.priority)  # stable: sticky order within a priority
            return scored
        if self._routing == "least_load":
            return sorted(usable, key=lambda m: (m.load, m.priority))
        if self._routing == "round_robin" and usable:
            start = next(self._turn) % len(usable)
            return usable[start:] + usable[:start]
        return sorted(usable, key=lambda m: (m.priority, m.load))


def breaker_flag(name: str) -> str:
    """The shared-state flag that tells every gateway process an upstream's breaker is open."""
    return f"breaker:{name}"


def _rendezvous(key: str, name: str) -> int:
    digest = hashlib.blake2b(f"{key}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
