"""Budgets: daily and monthly caps in tokens and dollars per organisation and per user.

A call is checked before dispatch against an estimate of what it will spend (the pipeline's input and
output estimates, and their price), which is reserved at once in the shared counters, so calls starting
together in several gateway processes cannot all slip under a cap. When the call ends, the reservation is
replaced by what the reply reported. Counters live in the ``FlowState`` (memory, or Redis for several
processes), one per tenant, cap kind and period, named after the period (UTC day ``d20261124``, month
``m202611``): a new period starts at zero, and the old counter expires at its end.

Without Redis the counters live in the process: ``seed`` starts them, at start-up, from the usage records of
the current day and month, so a restart never forgets what was spent.

Tokens count every input token (cached or not: the cache is a price, not a size) and every output token.
Dollars come from the price table; a model without a price counts zero dollars (it still counts tokens).

A refusal is ``402 billing_error``, the error Anthropic answers when a spend limit is reached, and not
``429 rate_limit_error``: SDKs retry a 429 on their own, with backoff, which for a cap that resets at midnight
only wastes calls, and a 429 tells the user "slow down" when the truth is "out of budget until …". The
message names the cap, its level and when it resets.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from claudegate.accounting.prices import PriceTable
from claudegate.alerts import Alerts
from claudegate.errors import BillingError
from claudegate.flow.state import CounterSpec, FlowState
from claudegate.keys import BudgetCaps, Identity
from claudegate.pipeline.cancel_safe import may_be_cut_short, take_or_give_back
from claudegate.pipeline.relay import ReplyResult
from claudegate.pipeline.request import CallRequest

__all__ = ["BudgetExceededError", "BudgetGate", "BudgetHold", "Spending", "period_end"]

_PER_MILLION: Final = 1_000_000

Spending = tuple[int, int | None, float, float]  # organisation, user (None: all of it), tokens, dollars


class BudgetExceededError(BillingError):
    """A call refused because it would pass a budget cap; ``resets_at`` is when that cap starts over."""

    def __init__(self, message: str, *, resets_at: datetime) -> None:
        super().__init__(message)
        self.resets_at = resets_at


@dataclass(frozen=True, slots=True)
class _Cap:
    spec: CounterSpec
    limit: float
    what: str  # "daily token budget of organisation acme"
    unit: str  # "tokens" or "usd"
    resets_at: datetime


@dataclass(slots=True)
class BudgetHold:
    """What a call reserved: settled with the real spend when it ends."""

    caps: list[_Cap]
    tokens: float
    usd: float
    model: str | None


def period_end(now: datetime, period: str) -> datetime:
    """The end of the UTC day or calendar month (``period``: "day" or "month") that ``now`` falls in."""
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    if period == "day":
        return day + timedelta(days=1)
    return datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)


class BudgetGate:
    """Checks and settles budgets for the pipeline. ``clock`` is the wall clock: periods are calendar ones."""

    __slots__ = ("_alerts", "_clock", "_guarded", "_prices", "_state")

    def __init__(
        self,
        state: FlowState,
        prices: PriceTable,
        clock: Callable[[], float] = time.time,
        alerts: Alerts | None = None,
    ) -> None:
        self._alerts = alerts
        self._state = state
        self._guarded = may_be_cut_short(state)
        self._prices = prices
        self._clock = clock

    async def reserve(self, call: CallRequest, estimated_in: int, estimated_out: int) -> BudgetHold | None:
        """Reserve the call's estimated spend under every cap that applies, or raise BudgetExceededError
        (nothing reserved). None when no cap applies. Cancelled, it reserves nothing, even halfway through
        the round trip to shared counters."""
        caps = self._caps(call.identity)
        if not caps:
            return None
        tokens = float(estimated_in + estimated_out)
        usd = self._estimated_usd(call.model, estimated_in, estimated_out)
        demands = [(cap.spec, tokens if cap.unit == "tokens" else usd, cap.limit) for cap in caps]
        if self._guarded:
            # A call cancelled while Redis reserves gives the reservation back rather than leaving it counted
            # until the period ends.
            refused = await take_or_give_back(
                self._state.try_count(demands), lambda refused: self._unreserve(demands, refused)
            )
        else:
            refused = await self._state.try_count(demands)
        if refused >= 0:
            cap = caps[refused]
            spent = (await self._state.counts([cap.spec]))[0]
            if self._alerts is not None:
                self._alerts.budget_spent(cap.what, cap.spec.key, max(spent, cap.limit), cap.limit, cap.unit)
            raise BudgetExceededError(self._refusal(cap, spent, demands[refused][1]), resets_at=cap.resets_at)
        return BudgetHold(caps=caps, tokens=tokens, usd=usd, model=call.model)

    async def _unreserve(self, demands: list[tuple[CounterSpec, float, float]], refused: int) -> None:
        """Give back what a cancelled ``try_count`` reserved (every amount when it refused none)."""
        if refused < 0:
            for spec, amount, _ in demands:
                if amount:
                    await self._state.count(spec, -amount)

    async def settle(self, hold: BudgetHold, result: ReplyResult) -> None:
        """Replace the reservation with what the call really spent (nothing, for a call that failed before
        the upstream charged anything)."""
        usage = result.usage
        tokens = (
            usage.input_tokens
            + usage.cache_creation_input_tokens
            + usage.cache_read_input_tokens
            + usage.output_tokens
        )
        model = result.model or hold.model
        cost = self._prices.cost(model, usage, batch=False) if model else None
        usd = float(cost) if cost is not None else 0.0
        unchanged: list[_Cap] = []
        for cap in hold.caps:
            difference = (tokens - hold.tokens) if cap.unit == "tokens" else (usd - hold.usd)
            if difference:
                total = await self._state.count(cap.spec, difference)
                if self._alerts is not None:
                    self._alerts.budget_spent(cap.what, cap.spec.key, total, cap.limit, cap.unit)
            else:
                unchanged.append(cap)
        if unchanged and self._alerts is not None and self._alerts.enabled:
            # The estimate was exact: the counters moved at the reservation; read them to tell the alerts.
            totals = await self._state.counts([cap.spec for cap in unchanged])
            for cap, total in zip(unchanged, totals, strict=True):
                self._alerts.budget_spent(cap.what, cap.spec.key, total, cap.limit, cap.unit)

    async def seed(self, spent_since: Callable[[datetime], Awaitable[Sequence[Spending]]]) -> None:
        """Start the counters of the current day and month from what ``spent_since(start)`` says each
        organisation and user spent since then (the stored usage records): (organisation id, user id or
        None for the organisation as a whole, tokens, dollars)."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        day_start = datetime(now.year, now.month, now.day, tzinfo=UTC)
        month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
        for start, period in ((day_start, "day"), (month_start, "month")):
            label = now.strftime("d%Y%m%d" if period == "day" else "m%Y%m")
            expires = period_end(now, period).timestamp()
            for org_id, user_id, tokens, usd in await spent_since(start):
                scope = f"org:{org_id}" if user_id is None else f"user:{user_id}"
                if tokens:
                    await self._state.count(CounterSpec(f"budget:{scope}:tokens:{label}", expires), tokens)
                if usd:
                    await self._state.count(CounterSpec(f"budget:{scope}:usd:{label}", expires), usd)

    def _caps(self, identity: Identity) -> list[_Cap]:
        settings = identity.settings
        levels: list[tuple[str, str, BudgetCaps]] = []
        if not settings.org_budget.is_unlimited:
            levels.append(
                (f"org:{identity.org_id}", f"organisation {identity.org_name}", settings.org_budget)
            )
        if identity.user_id is not None and not settings.user_budget.is_unlimited:
            levels.append(
                (
                    f"user:{identity.user_id}",
                    f"user {identity.user_name} of organisation {identity.org_name}",
                    settings.user_budget,
                )
            )
        if not levels:
            return []
        now = datetime.fromtimestamp(self._clock(), UTC)
        day_end, month_end = period_end(now, "day"), period_end(now, "month")
        day, month = now.strftime("d%Y%m%d"), now.strftime("m%Y%m")
        caps: list[_Cap] = []
        for scope, who, budget in levels:
            for period, label, end, tokens, usd in (
                ("daily", day, day_end, budget.daily_tokens, budget.daily_usd),
                ("monthly", month, month_end, budget.monthly_tokens, budget.monthly_usd),
            ):
                if tokens is not None:
                    spec = CounterSpec(f"budget:{scope}:tokens:{label}", end.timestamp())
                    caps.append(_Cap(spec, float(tokens), f"{period} token budget of {who}", "tokens", end))
                if usd is not None:
                    spec = CounterSpec(f"budget:{scope}:usd:{label}", end.timestamp())
                    caps.append(_Cap(spec, usd, f"{period} dollar budget of {who}", "usd", end))
        return caps

    def _estimated_usd(self, model: str | None, estimated_in: int, estimated_out: int) -> float:
        price = self._prices.price(model) if model else None
        if price is None:
            return 0.0
        return float(estimated_in * price.input + estimated_out * price.output) / _PER_MILLION

    def _refusal(self, cap: _Cap, spent: float, needed: float) -> str:
        now = datetime.fromtimestamp(self._clock(), UTC)
        if cap.unit == "tokens":
            limit, used, call = f"{cap.limit:,.0f} tokens", f"{spent:,.0f}", f"about {needed:,.0f} tokens"
        else:
            limit, used, call = f"${cap.limit:,.2f}", f"${spent:,.4f}", f"about ${needed:,.4f}"
        return (
            f"claudegate: this call would exceed the {cap.what} ({limit}; {used} used, the call needs "
            f"{call}). It resets at {cap.resets_at.strftime('%Y-%m-%dT%H:%M:%SZ')} "
            f"(in {_span(cap.resets_at - now)})."
        )


def _span(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3600)
    minutes = seconds // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{max(1, minutes)} min"
