"""Real gates on the virtual-clock loop for the tests of admission and dispatch: in-memory state on the loop's
clock, a pool of upstreams with their lanes and breakers, tenant limits and a budget, and readings of every
counter a call may hold (what the tests check after each way out)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from claudegate.accounting.prices import ModelPrice, PriceTable
from claudegate.flow.breaker import CircuitBreaker
from claudegate.flow.estimator import TokenEstimator
from claudegate.flow.limits import Lanes
from claudegate.flow.state import BucketSpec, CounterSpec, MemoryState
from claudegate.keys import NO_BUDGET, BudgetCaps, Identity, LimitSet, TenantSettings
from claudegate.pipeline.budgets import BudgetGate
from claudegate.pipeline.lease import Admission
from claudegate.pipeline.places import LaneEstimate, LaneQueues
from claudegate.pipeline.relay import ReplyResult
from claudegate.pipeline.request import CallRequest
from claudegate.pipeline.sink import Departure, RawHeaders
from claudegate.pipeline.tenants import TenantGate
from claudegate.upstream.pool import PoolMember, UpstreamPool
from claudegate.upstream.target import Upstream
from claudegate.wire.models import default_catalog
from claudegate.wire.tiers import Limits
from claudegate.wire.usage_tap import Usage

MODEL = "test-model"  # not in the catalogue: its lanes are the "unknown" class
OTHER_MODEL = "test-model-b"
PRICES = PriceTable(
    {
        model: ModelPrice(
            input=Decimal(1),
            output=Decimal(10),
            cache_write_5m=Decimal("1.25"),
            cache_write_1h=Decimal(2),
            cache_read=Decimal("0.1"),
            batch_discount=Decimal("0.5"),
        )
        for model in (MODEL, OTHER_MODEL)
    }
)
WALL = datetime(2026, 11, 24, 12, 0, tzinfo=UTC).timestamp()  # budgets count calendar days
DAILY_TOKENS = CounterSpec("budget:org:1:tokens:d20261124", 0.0)
ROOMY = Limits(1000, 1_000_000, 1_000_000)


class Sink(Departure):
    """A caller that keeps what it is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 0
        self.chunks: list[bytes] = []
        self.began = asyncio.Event()

    async def start(self, status: int, headers: RawHeaders) -> None:
        self.status = status
        self.began.set()

    async def send(self, chunk: bytes, *, more: bool) -> None:
        self.chunks.append(chunk)


NO_LIMITS = LimitSet()


def identity(
    *, key: LimitSet = NO_LIMITS, org: LimitSet = NO_LIMITS, budget: BudgetCaps = NO_BUDGET
) -> Identity:
    return Identity(
        org_id=1,
        org_name="acme",
        user_id=None,
        user_name=None,
        key_id=7,
        key_name="k",
        settings=TenantSettings(key=key, org=org, org_budget=budget),
    )


def breaker() -> CircuitBreaker:
    """Opens at the first failure; half-open at once after that (no time to wait for), one trial at a time."""
    return CircuitBreaker(failure_threshold=1, open_seconds=0.0, half_open_probes=1)


class Gates:
    """Every gate of admission, on the running loop's clock."""

    def __init__(
        self,
        upstreams: tuple[str, ...] = ("a",),
        *,
        lane: Limits = ROOMY,
        lane_concurrency: int = 8,
        clock: Callable[[], float] | None = None,
    ) -> None:
        loop_time = clock or asyncio.get_running_loop().time
        self.state = MemoryState(loop_time, wall_clock=lambda: WALL)
        self.lanes = Lanes(self.state)
        self.members = [
            PoolMember(
                Upstream(name, f"http://127.0.0.1:9/{name}", "sk-test"),
                breaker(),
                limits=lane,
                max_concurrency=lane_concurrency,
            )
            for name in upstreams
        ]
        self.pool = UpstreamPool(self.members, routing="priority")
        self.queues = LaneQueues(self.lanes)
        self.tenants = TenantGate(self.state)
        self.budgets = BudgetGate(self.state, PRICES, clock=lambda: WALL)
        self.estimator = TokenEstimator()
        self.admission = Admission(
            pool=self.pool,
            queues=self.queues,
            tenants=self.tenants,
            estimator=self.estimator,
            catalog=default_catalog(),
            budgets=self.budgets,
        )

    def member(self, name: str) -> PoolMember:
        return next(member for member in self.members if member.name == name)

    def call(
        self, who: Identity, *, deadline_in: float = 60.0, model: str = MODEL, **extra: object
    ) -> CallRequest:
        body = b'{"model":"%s","max_tokens":100,"messages":[{"role":"user","content":"hello there"}]}' % (
            model.encode()
        )
        return CallRequest(
            identity=who,
            request_id="req",
            body=body,
            model=model,
            max_tokens=100,
            deadline=asyncio.get_running_loop().time() + deadline_in,
            **extra,  # type: ignore[arg-type]
        )

    def estimate(self, call: CallRequest) -> LaneEstimate:
        return self.admission.estimate(call)

    # -- readings ------------------------------------------------------------------------------------------

    async def budget_spent(self) -> float:
        return (await self.state.counts([DAILY_TOKENS]))[0]

    async def tenant_level(self, kind: str, per_minute: int, scope: str = "key:7") -> float:
        """What is left in a tenant's ``requests`` or ``tokens`` bucket (``per_minute`` untouched)."""
        spec = BucketSpec.per_minute(f"{scope}:{kind}", per_minute)
        return (await self.state.levels([spec]))[0]

    async def slot_free(self, scope: str = "key:7") -> bool:
        """No call holds a concurrency slot of the tenant (its limit of one would let another in)."""
        if not await self.state.acquire(scope, 1):
            return False
        await self.state.release(scope)
        return True

    async def lane_levels(
        self, upstream: str = "a", rate_class: str = "unknown"
    ) -> tuple[float, float, float]:
        """Requests, input and output tokens left in a lane."""
        lane = self.lanes.get(upstream, rate_class, tier="1", limits=self.member(upstream).limits)
        levels = await self.state.levels([lane.requests, lane.input_tokens, lane.output_tokens])
        return levels[0], levels[1], levels[2]

    def in_flight(self, upstream: str = "a", rate_class: str = "unknown") -> int:
        return self.queues.queue(self.member(upstream), rate_class).in_flight


def replied(input_tokens: int, output_tokens: int, *, status: int = 200, model: str = MODEL) -> ReplyResult:
    """A result as the relay leaves it after a reply."""
    return ReplyResult(
        status=status,
        usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
        model=model,
    )
