"""Admission: every reservation a call needs, taken in one place and in one order, and given back on every
way out, as one ``Lease``.

``async with admission.admit(call, sink, result) as lease:`` takes, in this order:

1. the budget (``budgets.BudgetGate``): the call's estimated spend under every daily and monthly cap, or
   402. It never waits, so it comes first: a call out of budget costs no one anything.
2. the tenant limits (``tenants.TenantGate``): key, user and organisation requests and tokens per minute,
   then a concurrency slot of each. The call may wait for them, until its deadline; a tenant over its own
   limits waits here, holding no place in the upstream's queue that other tenants' calls could use.
3. a place on an upstream (``places.take_place``): a turn in the lane's admission queue (its requests,
   tokens and a concurrency slot), waited for in fair order;
4. the breaker's trial, when that upstream's breaker is half-open; a trial already out sends the call on to
   the next upstream (its place there is given back first).

If a stage refuses (a ``ClaudegateError``), the client leaves or the task is cancelled, the stages already
passed are given back before the exception leaves ``async with`` (a cancellation that lands while Redis is
taking the budget or a tenant's limits gives back what that round trip took: ``cancel_safe``); once
admitted, leaving the block settles the lease (``settle``): the tenant and the budget are charged what the
reply reported (``result``, which the relay fills in as the reply passes: nothing, for a call no upstream
served), and the place still held settles the same way (see ``places.LanePlace``). Settling twice does
nothing, so the pipeline may settle early.

Budget and tenant reservations belong to the call, places to its attempts: ``retry`` (the same call again,
on the same upstream or another) and ``fall_back`` (the policy's next model) end the place held and take a
new one through stages 3 and 4, and never take budget or tenant limits again. A call therefore holds exactly
one of each, however many attempts it makes, and pays once for what its final reply used.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType

from claudegate.alerts import Alerts
from claudegate.errors import ClaudegateError
from claudegate.flow.estimator import TokenEstimator
from claudegate.pipeline.budgets import BudgetGate, BudgetHold
from claudegate.pipeline.places import LaneEstimate, LanePlace, LaneQueues, take_place
from claudegate.pipeline.relay import ReplyResult
from claudegate.pipeline.request import CallRequest
from claudegate.pipeline.sink import ResponseSink
from claudegate.pipeline.tenants import TenantGate, TenantHold
from claudegate.pipeline.tracing import CallSpan
from claudegate.upstream.pool import UpstreamPool
from claudegate.wire.models import ModelCatalog

__all__ = ["UNKNOWN_CLASS", "Admission", "Lease"]

logger = logging.getLogger(__name__)

UNKNOWN_CLASS = "unknown"  # the model class of a model the catalogue does not know


class Admission:
    """The gates a call passes: budgets, tenant limits, the upstreams' queues and breakers."""

    def __init__(
        self,
        *,
        pool: UpstreamPool,
        queues: LaneQueues,
        tenants: TenantGate,
        estimator: TokenEstimator,
        catalog: ModelCatalog,
        budgets: BudgetGate | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        self.pool = pool
        self.queues = queues
        self.tenants = tenants
        self.estimator = estimator
        self.catalog = catalog
        self.budgets = budgets
        self.alerts = alerts

    def admit(
        self, call: CallRequest, sink: ResponseSink, result: ReplyResult, trace: CallSpan | None = None
    ) -> Lease:
        """The call's lease, to enter with ``async with``: entering takes the reservations (module doc)."""
        return Lease(self, call, sink, result, trace)

    def estimate(self, call: CallRequest) -> LaneEstimate:
        """The call's model class and token estimates."""
        model = call.model or ""
        info = self.catalog.resolve(model)
        return LaneEstimate(
            rate_class=info.rate_class if info is not None else UNKNOWN_CLASS,
            input_tokens=self.estimator.input_tokens(model, len(call.body)),
            output_tokens=self.estimator.output_tokens(model, call.max_tokens),
            expected_output_tokens=self.estimator.expected_output_tokens(model, call.max_tokens),
        )


class Lease:
    """What one call holds while it runs (see the module). ``call`` is the call as it now runs (a fallback
    model's, after ``fall_back``) and ``place`` the attempt's place on an upstream."""

    __slots__ = (
        "_admission",
        "_budget",
        "_entered",
        "_estimate",
        "_sent",
        "_settled",
        "_sink",
        "_tenant",
        "_trace",
        "call",
        "place",
        "result",
    )

    def __init__(
        self,
        admission: Admission,
        call: CallRequest,
        sink: ResponseSink,
        result: ReplyResult,
        trace: CallSpan | None,
    ) -> None:
        self._admission = admission
        self._sink = sink
        self._trace = trace
        self._estimate = admission.estimate(call)
        self._budget: BudgetHold | None = None
        self._tenant: TenantHold | None = None
        self._entered = False
        self._settled = False
        self._sent = False  # an attempt of the call reached an upstream
        self.call = call
        self.result = result
        self.place: LanePlace | None = None

    async def __aenter__(self) -> Lease:
        if self._entered:
            raise RuntimeError("a lease is entered once")
        self._entered = True
        gates, call, estimate = self._admission, self.call, self._estimate
        try:
            if gates.budgets is not None:
                budgets = gates.budgets
                self._budget = await budgets.reserve(call, estimate.input_tokens, estimate.output_tokens)
            self._tenant = await gates.tenants.take(
                call.identity, estimate.input_tokens + estimate.output_tokens, call.deadline
            )
            await self._take_place(frozenset())
        except BaseException:
            await self.settle()
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.settle()

    async def retry(self, failed_on: frozenset[str]) -> None:
        """Another attempt of the same call: the place held ends (given back, unless the attempt settled
        it) and a new one is taken, upstreams in ``failed_on`` last. Budget and tenant limits are not taken
        again. Raises as ``admit`` does if no place can be had; the lease still settles on leaving."""
        await self._end_place()
        await self._take_place(failed_on)

    async def fall_back(self, call: CallRequest) -> None:
        """Go on with ``call`` (the same call for the policy's next model): a place on its model's lanes,
        with its estimates, replaces the one held. Budget and tenant limits keep the call's reservation."""
        await self._end_place()
        self.call = call
        self._estimate = self._admission.estimate(call)
        await self._take_place(frozenset())

    async def settle(self) -> None:
        """End the lease with what ``result`` reports (once; later calls do nothing): the place held settles
        (or is given back), the tenant and the budget are charged the real usage instead of the estimate."""
        if self._settled:
            return
        self._settled = True
        gates, result = self._admission, self.result
        try:
            await self._end_place(result)
        finally:
            try:
                if self._tenant is not None:
                    usage = result.usage
                    tokens = usage.input_tokens + usage.output_tokens + usage.cache_creation_input_tokens
                    await gates.tenants.settle(self._tenant, tokens, served=self._sent)
            finally:
                if self._budget is not None and gates.budgets is not None:
                    await gates.budgets.settle(self._budget, result)

    async def _end_place(self, result: ReplyResult | None = None) -> None:
        place, self.place = self.place, None
        if place is None:
            return
        self._sent = self._sent or place.sent
        if result is None:
            await place.release()
        else:
            await place.settle(result)

    async def _take_place(self, failed_on: frozenset[str]) -> None:
        if self._settled or not self._entered:
            raise RuntimeError("a lease takes places only between entering it and settling it")
        gates, trace, call = self._admission, self._trace, self.call
        debug = logger.isEnabledFor(logging.DEBUG)
        waiting_since = time.time_ns() if trace is not None or debug else 0
        began = time.perf_counter()
        try:
            place = await take_place(
                call,
                self._sink,
                pool=gates.pool,
                queues=gates.queues,
                estimator=gates.estimator,
                estimate=self._estimate,
                failed_on=failed_on,
                alerts=gates.alerts,
            )
        except ClaudegateError:
            if trace is not None:
                trace.admitted(waiting_since, None)
            raise
        self.place = place
        self.result.admission_wait_s += time.perf_counter() - began
        if trace is not None:
            trace.admitted(waiting_since, place.member.name)
        if debug:
            logger.debug(
                "request %s: attempt %d admitted on %s after %.1f ms",
                call.request_id,
                self.result.attempts + 1,
                place.member.name,
                (time.time_ns() - waiting_since) / 1e6,
            )
