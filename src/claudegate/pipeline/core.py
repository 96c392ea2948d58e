"""The pipeline: budgets → tenant limits → admission → dispatch with retries and failover → relay →
accounting.

Every admitted call ends in exactly one reply to its sink and one usage record, through upstream faults,
retries, client disconnects and shutdown. Retries happen only before any byte of the reply has reached
the caller, only while the deadline allows, and each retry goes back through the limiter, so retrying
never provokes the 429s it is recovering from.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Hashable
from dataclasses import dataclass

from claudegate.errors import ApiError, ClaudegateError, GatewayTimeoutError, OverloadedError, RateLimitError
from claudegate.flow.admission import UPSTREAM_LAG_S, AdmissionQueue, Ticket
from claudegate.flow.breaker import BreakerState
from claudegate.flow.estimator import TokenEstimator
from claudegate.flow.limits import Lanes
from claudegate.flow.retry import RetryPolicy, retry_after_seconds, should_retry_status
from claudegate.pipeline.accounting import Accountant
from claudegate.pipeline.budgets import BudgetGate, BudgetHold
from claudegate.pipeline.relay import (
    ClientGone,
    ReplyResult,
    UpstreamDropped,
    cancelling,
    forwarded_headers,
    open_reply,
    relay,
)
from claudegate.pipeline.request import CallRequest
from claudegate.pipeline.sink import ResponseSink
from claudegate.pipeline.tenants import TenantGate
from claudegate.upstream.http import HttpClient, HttpResponse
from claudegate.upstream.pool import PoolMember, UpstreamPool, breaker_flag
from claudegate.wire.models import ModelCatalog

__all__ = ["Pipeline"]

logger = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # the status usage records use for a call its client abandoned (nginx's convention)
_UNKNOWN_CLASS = "unknown"


@dataclass(slots=True)
class _Failure:
    """A failed attempt that may be retried: an error reply not yet relayed, or an unreachable upstream."""

    error: ClaudegateError | None = None
    response: HttpResponse | None = None
    body: bytes = b""


class Pipeline:
    def __init__(
        self,
        *,
        pool: UpstreamPool,
        lanes: Lanes,
        http: HttpClient,
        tenants: TenantGate,
        estimator: TokenEstimator,
        accountant: Accountant,
        catalog: ModelCatalog,
        retry: RetryPolicy,
        rng: random.Random | None = None,
        budgets: BudgetGate | None = None,
    ) -> None:
        self.pool = pool
        self.lanes = lanes
        self._http = http
        self._tenants = tenants
        self._estimator = estimator
        self._accountant = accountant
        self._catalog = catalog
        self._retry = retry
        self._rng = rng or random.Random()
        self._queues: dict[tuple[str, str], AdmissionQueue] = {}
        self._budgets = budgets

    def queue(self, member: PoolMember, rate_class: str) -> AdmissionQueue:
        key = (member.name, rate_class)
        queue = self._queues.get(key)
        if queue is None:
            lane = self.lanes.get(member.name, rate_class, tier=member.tier, limits=member.limits)
            queue = AdmissionQueue(
                lane, self.lanes.state, max_concurrency=member.max_concurrency, headroom_s=UPSTREAM_LAG_S
            )
            self._queues[key] = queue
        return queue

    def waiting(self, upstream: str) -> int:
        """Calls waiting for their turn at one upstream, over its rate classes (the console's live page)."""
        return sum(queue.waiting for (name, _), queue in self._queues.items() if name == upstream)

    async def run(self, call: CallRequest, sink: ResponseSink) -> ReplyResult:
        """Run one call to its end. ClaudegateError means nothing was sent to the sink: the front door
        answers it; every other outcome has been written to the sink already."""
        result = ReplyResult()
        budget: BudgetHold | None = None
        try:
            model = call.model or ""
            info = self._catalog.resolve(model)
            rate_class = info.rate_class if info is not None else _UNKNOWN_CLASS
            estimated_in = self._estimator.input_tokens(model, len(call.body))
            estimated_out = self._estimator.output_tokens(model, call.max_tokens)
            # Budget stage (pipeline/budgets.py): reserve the estimate under the caps, or refuse (402).
            if self._budgets is not None:
                budget = await self._budgets.reserve(call, estimated_in, estimated_out)
            async with self._tenants.hold(
                call.identity, estimated_in + estimated_out, call.deadline
            ) as taken:
                await self._dispatch(
                    call,
                    sink,
                    result,
                    rate_class=rate_class,
                    estimated_in=estimated_in,
                    estimated_out=estimated_out,
                )
                await self._tenants.settle(
                    taken,
                    result.usage.input_tokens
                    + result.usage.output_tokens
                    + result.usage.cache_creation_input_tokens,
                )
        except ClaudegateError as error:
            result.status, result.error_type = error.status, error.error_type
            raise
        except ClientGone:
            result.status, result.error_type, result.client_gone = CLIENT_CLOSED, "client_disconnected", True
        except asyncio.CancelledError:
            # The caller's task was cancelled (an in-process caller gave up, or shutdown): it left.
            result.status, result.error_type, result.client_gone = CLIENT_CLOSED, "client_disconnected", True
            raise
        except UpstreamDropped as error:
            logger.warning(
                "upstream %s cut a reply short (%s); cutting the client's connection too (request %s)",
                result.upstream,
                error,
                call.request_id,
            )
            raise
        finally:
            self._accountant.record(call, result, upstream=result.upstream, attempts=max(1, result.attempts))
            if budget is not None and self._budgets is not None:
                await self._budgets.settle(budget, result)
        return result

    def record_refusal(self, call: CallRequest, error: ClaudegateError | None) -> None:
        """The usage record of an authenticated call refused before the pipeline ran (bad input), or of one
        whose client left while still sending it (``error`` None)."""
        result = ReplyResult()
        if error is None:
            result.status, result.error_type, result.client_gone = CLIENT_CLOSED, "client_disconnected", True
        else:
            result.status, result.error_type = error.status, error.error_type
        self._accountant.record(call, result, upstream=None, attempts=1)

    async def _dispatch(
        self,
        call: CallRequest,
        sink: ResponseSink,
        result: ReplyResult,
        *,
        rate_class: str,
        estimated_in: int,
        estimated_out: int,
    ) -> None:
        failed_on: set[str] = set()
        while True:
            member, queue, ticket = await self._admit(
                call,
                sink,
                rate_class=rate_class,
                estimated_in=estimated_in,
                estimated_out=estimated_out,
                failed_on=failed_on,
            )
            result.attempts += 1
            result.upstream = member.name
            failure = await self._attempt(
                call,
                sink,
                result,
                member=member,
                queue=queue,
                ticket=ticket,
            )
            if failure is None:
                return
            failed_on.add(member.name)
            headers = failure.response.headers if failure.response is not None else {}
            delay = self._retry.delay(result.attempts - 1, headers, self._rng.random())
            if self._untried_upstream_open(call, failed_on):
                delay = 0.0  # the next attempt fails over to an upstream this call has not tried yet
            now = time.monotonic()
            if not self._retry.may_retry(
                result.attempts, delay, now, call.deadline - queue.reply_start(call.stream)
            ):
                break
            if failure.response is not None:
                failure.response.release()
            if await _client_left_during(sink, delay):
                raise ClientGone
        # Out of attempts or of time: the last failure is the answer.
        if failure.response is not None:
            try:
                await relay(failure.response, sink, result, body=failure.body)
            finally:
                failure.response.release()
            return
        assert failure.error is not None
        raise failure.error

    def _untried_upstream_open(self, call: CallRequest, failed_on: set[str]) -> bool:
        """Whether an upstream this call has not failed on takes calls now (its breaker closed)."""
        now = time.monotonic()
        return any(
            member.name not in failed_on and member.breaker.state(now) is BreakerState.CLOSED
            for member in self.pool.candidates(call.sticky_key)
        )

    async def _admit(
        self,
        call: CallRequest,
        sink: ResponseSink,
        *,
        rate_class: str,
        estimated_in: int,
        estimated_out: int,
        failed_on: set[str] | None = None,
    ) -> tuple[PoolMember, AdmissionQueue, Ticket]:
        """A place in the queue of the first upstream that can start the call before its deadline; upstreams
        that already failed this call come last."""
        candidates = self.pool.candidates(call.sticky_key)
        last_resort = not candidates
        if last_resort:
            candidates = self.pool.last_resort()
        if failed_on:
            candidates = sorted(candidates, key=lambda member: member.name in failed_on)
        identity = call.identity
        settings = identity.settings
        expected_out = self._estimator.expected_output_tokens(call.model or "", call.max_tokens)
        place = functools.partial(_place_of, call)
        refusals: list[RateLimitError] = []
        for member in candidates:
            queue = self.queue(member, rate_class)
            ticket = Ticket(
                org=str(identity.org_id),
                user=str(identity.user_id if identity.user_id is not None else f"key:{identity.key_id}"),
                input_tokens=estimated_in,
                output_tokens=estimated_out,
                deadline=call.deadline,
                streamed=call.stream,
                priority=call.priority,
                org_weight=settings.org_weight,
                user_weight=settings.user_weight,
                on_queued=call.on_queued,
                expected_output_tokens=expected_out,
                place=place,
                max_tokens=call.max_tokens,
            )
            try:
                await queue.admit(ticket, leave=sink.gone)
            except RateLimitError as refusal:
                refusals.append(refusal)
                continue
            except asyncio.CancelledError:
                if sink.gone.is_set() and not cancelling():
                    raise ClientGone from None  # the caller left while waiting for its turn
                raise
            if last_resort or member.breaker.allow(time.monotonic()):
                return member, queue, ticket
            # A half-open breaker whose probe is already out: give the place back and try the next upstream.
            queue.finished(ticket, 0.0, None)
            await self.lanes.refund(queue.lane, estimated_in, estimated_out)
        if refusals:
            raise min(refusals, key=lambda refusal: refusal.retry_after)
        raise OverloadedError("claudegate: every upstream is failing; retry shortly")

    async def _attempt(
        self,
        call: CallRequest,
        sink: ResponseSink,
        result: ReplyResult,
        *,
        member: PoolMember,
        queue: AdmissionQueue,
        ticket: Ticket,
    ) -> _Failure | None:
        """One try on one upstream (the ``ticket`` it was admitted with carries the call's estimates). Returns
        a failure worth retrying, or None once the reply is relayed."""
        upstream = member.upstream
        member.in_flight += 1
        began = time.perf_counter()
        first_byte: float | None = None
        output_tokens: int | None = None  # of a reply that came complete: the lane learns from it
        response: HttpResponse | None = None
        try:
            try:
                response = await open_reply(
                    self._http,
                    upstream,
                    path_and_query=call.path_and_query,
                    headers=forwarded_headers(call.headers, upstream),
                    body=call.body,
                    sink=sink,
                )
            except (ApiError, GatewayTimeoutError) as error:
                await self._failed(member)
                await self.lanes.refund(queue.lane, ticket.input_tokens, ticket.output_tokens)
                return _Failure(error=error)
            first_byte = time.perf_counter() - began
            await self.lanes.correct(queue.lane, response.headers, first_byte)
            status = response.status
            if status >= 400 and should_retry_status(status, response.headers):
                body = await response.read()
                await self.lanes.refund(queue.lane, ticket.input_tokens, ticket.output_tokens)
                if status == 429:
                    queue.pause(retry_after_seconds(response.headers) or 1.0)
                else:
                    await self._failed(member)
                failure = _Failure(response=response, body=body)
                response = None  # released by whoever relays or drops the failure
                return failure
            try:
                await relay(response, sink, result)
                if status < 400 and result.error_type is None:
                    output_tokens = result.usage.output_tokens
            finally:
                await self._settle(call, result, queue, ticket)
                if status < 500:
                    if member.breaker.record_success():
                        await self.lanes.state.trip(breaker_flag(member.name), 0)
                else:
                    await self._failed(member)
            return None
        finally:
            member.in_flight -= 1
            if response is not None:
                response.release()
            queue.finished(ticket, time.perf_counter() - began, first_byte, output_tokens=output_tokens)

    async def _failed(self, member: PoolMember) -> None:
        """Count a failure against the upstream; if that opens its breaker, tell the other processes."""
        if member.breaker.record_failure(time.monotonic()):
            logger.warning("upstream %s is failing: its circuit breaker is open", member.name)
            await self.lanes.state.trip(breaker_flag(member.name), member.breaker.open_seconds)

    async def _settle(
        self,
        call: CallRequest,
        result: ReplyResult,
        queue: AdmissionQueue,
        ticket: Ticket,
    ) -> None:
        """Replace the estimates the call was admitted with (``ticket``) by what the reply reported, and
        learn from them."""
        usage = result.usage
        charged_in = usage.input_tokens + usage.cache_creation_input_tokens
        if result.status >= 400 and not result.streamed:
            charged_in = 0  # an error reply consumed no tokens
        await self.lanes.settle(
            queue.lane, charged_in - ticket.input_tokens, usage.output_tokens - ticket.output_tokens
        )
        if result.status < 400 and call.model:
            self._estimator.observe(call.model, len(call.body), charged_in, usage.output_tokens)


def _place_of(call: CallRequest) -> Hashable:
    """What tells a call apart when it comes back after a refusal: the same key sending the same request."""
    return (call.identity.key_id, call.path_and_query, hash(call.body))


async def _client_left_during(sink: ResponseSink, seconds: float) -> bool:
    """Sleep ``seconds``, or less if the client leaves; say whether it left."""
    try:
        await asyncio.wait_for(sink.gone.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
