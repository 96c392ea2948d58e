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
from dataclasses import dataclass, replace
from typing import Any

from claudegate.alerts import Alerts
from claudegate.errors import ApiError, ClaudegateError, GatewayTimeoutError, OverloadedError, RateLimitError
from claudegate.flow.admission import UPSTREAM_LAG_S, AdmissionQueue, Ticket
from claudegate.flow.breaker import BreakerState
from claudegate.flow.estimator import TokenEstimator
from claudegate.flow.limits import Lanes
from claudegate.flow.retry import RetryPolicy, retry_after_seconds, should_retry_status
from claudegate.pipeline.accounting import Accountant
from claudegate.pipeline.budgets import BudgetGate, BudgetHold
from claudegate.pipeline.policies import with_model
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
from claudegate.pipeline.tracing import AttemptSpan, CallSpan, CallTracing, TracedSink
from claudegate.upstream.http import HttpClient, HttpResponse
from claudegate.upstream.pool import PoolMember, UpstreamPool, breaker_flag
from claudegate.wire.models import ModelCatalog

__all__ = ["CLIENT_CLOSED", "SHUTTING_DOWN", "Pipeline"]

logger = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # the status usage records use for a call its client abandoned (nginx's convention)
SHUTTING_DOWN = 529  # the status of a call stopped by the gateway's shutdown before its reply began
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
        tracing: CallTracing | None = None,
        alerts: Alerts | None = None,
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
        self._tracing = tracing  # None: no tracing, and no cost for it
        self._alerts = alerts

    def close_tracing(self) -> None:
        """Send the spans still buffered (at shutdown)."""
        if self._tracing is not None:
            self._tracing.close()

    def queue_states(self) -> list[tuple[str, str, int, int]]:
        """(upstream, model class, calls waiting, calls in flight) of each admission queue, for metrics."""
        return [
            (upstream, rate_class, queue.waiting, queue.in_flight)
            for (upstream, rate_class), queue in self._queues.items()
        ]

    def breaker_states(self) -> list[tuple[str, str]]:
        """(upstream, breaker state) of each upstream, for metrics."""
        now = time.monotonic()
        return [(member.name, member.breaker.state(now).value) for member in self.pool.members]

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
        trace = self._tracing.start(call) if self._tracing is not None else None
        if trace is not None:
            sink = TracedSink(sink, trace.reply_headers)
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
                try:
                    await self._dispatch_chain(
                        call,
                        sink,
                        result,
                        rate_class=rate_class,
                        estimated_in=estimated_in,
                        estimated_out=estimated_out,
                        trace=trace,
                    )
                finally:
                    # On every path, refused and failed ones included: the tenant pays what the upstream
                    # charged (nothing, for a call it never served), not the reservation.
                    await self._tenants.settle(
                        taken,
                        result.usage.input_tokens
                        + result.usage.output_tokens
                        + result.usage.cache_creation_input_tokens,
                    )
        except ClaudegateError as error:
            result.status, result.error_type = error.status, error.error_type
            self._accountant.metrics.refused(error.error_type)
            raise
        except ClientGone:
            if sink.shut_down:
                # The gateway stopped the call at shutdown; the front door ends the reply with an error. A
                # stream keeps its status (200) and the tokens it produced so far.
                result.status, result.error_type = result.status or SHUTTING_DOWN, "gateway_shutdown"
            else:
                result.status, result.error_type, result.client_gone = (
                    CLIENT_CLOSED,
                    "client_disconnected",
                    True,
                )
        except asyncio.CancelledError:
            # The caller's task was cancelled (an in-process caller gave up, or shutdown): it left.
            result.status, result.error_type, result.client_gone = CLIENT_CLOSED, "client_disconnected", True
            raise
        except UpstreamDropped as error:
            logger.warning(
                "upstream %s cut a reply short (%s); ending the client's reply with an error (request %s)",
                result.upstream,
                error,
                call.request_id,
            )
            raise
        finally:
            attempts = max(1, result.attempts)
            cost = self._accountant.record(call, result, upstream=result.upstream, attempts=attempts)
            if trace is not None:
                trace.end(result, cost_usd=float(cost) if cost is not None else None, attempts=attempts)
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

    async def _dispatch_chain(
        self,
        call: CallRequest,
        sink: ResponseSink,
        result: ReplyResult,
        *,
        rate_class: str,
        estimated_in: int,
        estimated_out: int,
        trace: CallSpan | None = None,
    ) -> None:
        """Dispatch the call to its model, then, while that model is overloaded or unavailable, to each of
        its policy's fallbacks in turn (pipeline/policies.py)."""
        while not await self._dispatch(
            call,
            sink,
            result,
            rate_class=rate_class,
            estimated_in=estimated_in,
            estimated_out=estimated_out,
            trace=trace,
        ):
            model = call.fallbacks[0]
            logger.info(
                "model %s is unavailable; policy %s falls back to %s (request %s)",
                call.model,
                call.policy,
                model,
                call.request_id,
            )
            call = replace(call, model=model, fallbacks=call.fallbacks[1:], body=with_model(call.body, model))
            info = self._catalog.resolve(model)
            rate_class = info.rate_class if info is not None else _UNKNOWN_CLASS

    def reconfigure(self, *, retry: RetryPolicy, changed_upstreams: set[str]) -> None:
        """A live reload: new retry settings, and fresh queues for upstreams whose member was replaced
        (calls waiting in the old queues are admitted by them as before)."""
        self._retry = retry
        for key in [key for key in self._queues if key[0] in changed_upstreams]:
            del self._queues[key]
        for name in changed_upstreams:
            self.lanes.forget(name)

    def record_cached(self, call: CallRequest, result: ReplyResult) -> None:
        """The usage record of a call answered from the gateway's response cache: no upstream, no cost."""
        self._accountant.record(call, result, upstream=None, attempts=0, cached=True)

    async def _dispatch(
        self,
        call: CallRequest,
        sink: ResponseSink,
        result: ReplyResult,
        *,
        rate_class: str,
        estimated_in: int,
        estimated_out: int,
        trace: CallSpan | None = None,
    ) -> bool:
        """Dispatch the call, with retries and failover. False (nothing sent to the sink) when the call's
        model failed, no other upstream is left to try and the call has a fallback model to try next."""
        failed_on: set[str] = set()
        debug = logger.isEnabledFor(logging.DEBUG)
        while True:
            waiting_since = time.time_ns() if trace is not None or debug else 0
            admission_began = time.perf_counter()
            try:
                member, queue, ticket = await self._admit(
                    call,
                    sink,
                    rate_class=rate_class,
                    estimated_in=estimated_in,
                    estimated_out=estimated_out,
                    failed_on=failed_on,
                )
            except ClaudegateError:
                if trace is not None:
                    trace.admitted(waiting_since, None)
                raise
            result.admission_wait_s += time.perf_counter() - admission_began
            if trace is not None:
                trace.admitted(waiting_since, member.name)
            if debug:
                logger.debug(
                    "request %s: attempt %d admitted on %s after %.1f ms",
                    call.request_id,
                    result.attempts + 1,
                    member.name,
                    (time.time_ns() - waiting_since) / 1e6,
                )
            result.attempts += 1
            result.upstream = member.name
            attempt = (
                trace.attempt(member.name, member.upstream.base_url, result.attempts, call.model or "unknown")
                if trace is not None
                else None
            )
            if attempt is None:  # untraced: no extra coroutine on the hot path
                failure = await self._attempt(call, sink, result, member=member, queue=queue, ticket=ticket)
            else:
                failure = await self._traced_attempt(
                    call, sink, result, member=member, queue=queue, ticket=ticket, attempt=attempt
                )
            if failure is None:
                return True
            logger.debug(
                "request %s: attempt %d on %s failed (%s)",
                call.request_id,
                result.attempts,
                member.name,
                failure.response.status if failure.response is not None else failure.error,
            )
            failed_on.add(member.name)
            headers = failure.response.headers if failure.response is not None else {}
            delay = self._retry.delay(result.attempts - 1, headers, self._rng.random())
            if self._untried_upstream_open(call, failed_on):
                delay = 0.0  # the next attempt fails over to an upstream this call has not tried yet
            elif call.fallbacks and time.monotonic() < call.deadline:
                # Another model serves now rather than this one after a backoff.
                if failure.response is not None:
                    failure.response.release()
                return False
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
            return True
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

    async def _traced_attempt(
        self,
        call: CallRequest,
        sink: ResponseSink,
        result: ReplyResult,
        *,
        member: PoolMember,
        queue: AdmissionQueue,
        ticket: Ticket,
        attempt: AttemptSpan,
    ) -> _Failure | None:
        """``_attempt`` inside the attempt's span."""
        try:
            failure = await self._attempt(
                call, sink, result, member=member, queue=queue, ticket=ticket, trace_headers=attempt
            )
        except BaseException as error:
            attempt.end(result.status, result.error_type or type(error).__name__)
            raise
        if failure is None:
            attempt.end(result.status, result.error_type if result.status >= 400 else None)
        elif failure.response is not None:
            attempt.end(failure.response.status, f"http_{failure.response.status}")
        else:
            attempt.end(None, failure.error.error_type if failure.error is not None else "error")
        return failure

    async def _attempt(
        self,
        call: CallRequest,
        sink: ResponseSink,
        result: ReplyResult,
        *,
        member: PoolMember,
        queue: AdmissionQueue,
        ticket: Ticket,
        trace_headers: AttemptSpan | None = None,
    ) -> _Failure | None:
        """One try on one upstream (the ``ticket`` it was admitted with carries the call's estimates). Returns
        a failure worth retrying, or None once the reply is relayed."""
        upstream = member.upstream
        member.in_flight += 1
        began = time.perf_counter()
        first_byte: float | None = None
        output_tokens: int | None = None  # of a reply that came complete: the lane learns from it
        response: HttpResponse | None = None
        headers = forwarded_headers(call.headers, upstream)
        if trace_headers is not None:
            headers = trace_headers.with_context(headers)
        seen: dict[str, Any] = {"upstream": member.name, "began_ms": round((began - call.started) * 1000, 3)}
        result.attempt_log.append(seen)
        try:
            try:
                response = await open_reply(
                    self._http,
                    upstream,
                    path_and_query=call.path_and_query,
                    headers=headers,
                    body=call.body,
                    sink=sink,
                )
            except (ApiError, GatewayTimeoutError) as error:
                seen.update(status=error.status, error_type=error.error_type)
                await self._failed(member)
                await self.lanes.refund(queue.lane, ticket.input_tokens, ticket.output_tokens)
                return _Failure(error=error)
            first_byte = time.perf_counter() - began
            await self.lanes.correct(queue.lane, response.headers, first_byte)
            status = response.status
            seen.update(
                status=status,
                upstream_request_id=response.headers.get("request-id"),
                first_byte_ms=round(first_byte * 1000, 3),
            )
            if status >= 400 and should_retry_status(status, response.headers):
                body = await response.read()
                await self.lanes.refund(queue.lane, ticket.input_tokens, ticket.output_tokens)
                if status == 429:
                    queue.pause(retry_after_seconds(response.headers) or 1.0)
                    if self._alerts is not None:
                        self._alerts.upstream_throttled(member.name, retry_after_seconds(response.headers))
                else:
                    await self._failed(member)
                failure = _Failure(response=response, body=body)
                response = None  # released by whoever relays or drops the failure
                return failure
            whole: bytes | None = None
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                # Read a whole reply before relaying it: one cut short has sent nothing to the client yet,
                # so it is retried like an upstream that could not be reached.
                try:
                    whole = await response.read()
                except BaseException as error:
                    # Nothing of this reply reaches the client: its estimate goes back to the lane.
                    await self.lanes.refund(queue.lane, ticket.input_tokens, ticket.output_tokens)
                    if not isinstance(error, ConnectionError | TimeoutError):
                        raise
                    if sink.gone.is_set():
                        result.client_gone = True
                        raise ClientGone from None
                    await self._failed(member)
                    return _Failure(
                        error=ApiError(
                            f"The upstream {member.name} closed the connection before its reply was complete"
                        )
                    )
            try:
                await relay(response, sink, result, body=whole)
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
            seen["ms"] = round((time.perf_counter() - began) * 1000, 3)
            member.in_flight -= 1
            if response is not None:
                response.release()
            queue.finished(ticket, time.perf_counter() - began, first_byte, output_tokens=output_tokens)

    async def _failed(self, member: PoolMember) -> None:
        """Count a failure against the upstream; if that opens its breaker, tell the other processes."""
        if member.breaker.record_failure(time.monotonic()):
            logger.warning("upstream %s is failing: its circuit breaker is open", member.name)
            if self._alerts is not None:
                self._alerts.breaker_opened(member.name, member.breaker.open_seconds)
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
