"""An attempt's place on an upstream: its turn in a lane's admission queue (the lane's requests and tokens,
and one of its concurrency slots) and, on an upstream whose breaker is half-open, the breaker's trial.

``take_place`` finds the first upstream that can start the call before its deadline. The ``LanePlace`` it
returns is ended exactly once, by whichever comes first: ``settle`` (a reply came back: its real usage
replaces the estimate, the lane and the estimator learn, the breaker hears how it went), ``unserved`` or
``throttled`` (the upstream did not serve it: the tokens go back), or ``release`` (nothing more is known: the
call was cancelled, or its client left). Every end frees the queue's slot, and a breaker trial that ended
without telling whether the upstream works is handed back for another call to make.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from claudegate.alerts import Alerts
from claudegate.errors import OverloadedError, RateLimitError
from claudegate.flow.admission import UPSTREAM_LAG_S, AdmissionQueue, Ticket
from claudegate.flow.breaker import BreakerState
from claudegate.flow.estimator import TokenEstimator
from claudegate.flow.limits import Lanes
from claudegate.flow.shared_turns import place_digest
from claudegate.flow.state import MemoryState
from claudegate.pipeline.relay import ClientGone, ReplyResult, cancelling
from claudegate.pipeline.request import CallRequest
from claudegate.pipeline.sink import ResponseSink
from claudegate.upstream.pool import PoolMember, UpstreamPool, breaker_flag

__all__ = ["LaneEstimate", "LanePlace", "LaneQueues", "take_place"]

logger = logging.getLogger(__name__)


class LaneQueues:
    """The admission queue of each lane (an upstream and a model class), made on first use."""

    def __init__(self, lanes: Lanes) -> None:
        self.lanes = lanes
        self._queues: dict[tuple[str, str], AdmissionQueue] = {}

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

    def states(self) -> list[tuple[str, str, int, int]]:
        """(upstream, model class, calls waiting, calls in flight) of each queue, for metrics."""
        return [
            (upstream, rate_class, queue.waiting, queue.in_flight)
            for (upstream, rate_class), queue in self._queues.items()
        ]

    def waiting(self, upstream: str) -> int:
        """Calls waiting for their turn at one upstream, over its rate classes."""
        return sum(queue.waiting for (name, _), queue in self._queues.items() if name == upstream)

    def forget(self, upstreams: set[str]) -> None:
        """Fresh queues and lanes for these upstreams (their member was replaced); calls waiting in the old
        queues are admitted by them as before."""
        for key in [key for key in self._queues if key[0] in upstreams]:
            del self._queues[key]
        for name in upstreams:
            self.lanes.forget(name)


class LaneEstimate(NamedTuple):
    """What a call is admitted to a lane with: its model class and token estimates (a tuple: made on every
    call, it costs less than a frozen dataclass)."""

    rate_class: str
    input_tokens: int
    output_tokens: int
    expected_output_tokens: float


@dataclass(eq=False, slots=True)
class LanePlace:
    """One attempt's place on one upstream (see the module)."""

    call: CallRequest  # the call as admitted (a fallback model's, after a fallback)
    member: PoolMember
    queue: AdmissionQueue
    ticket: Ticket
    lanes: Lanes
    estimator: TokenEstimator
    alerts: Alerts | None = None
    probe: bool = False  # it holds the half-open breaker's trial
    sent: bool = False
    began: float = 0.0
    first_byte: float | None = None
    ended: bool = field(default=False)

    def dispatch(self) -> None:
        """The attempt is about to be sent upstream."""
        self.sent = True
        self.began = time.perf_counter()
        self.member.in_flight += 1

    async def correct(self, headers: Mapping[str, str]) -> None:
        """The reply's status and headers arrived: the lane follows the account's limits they report."""
        self.first_byte = time.perf_counter() - self.began
        await self.lanes.correct(self.queue.lane, headers, self.first_byte)

    async def settle(self, result: ReplyResult) -> None:
        """A reply came back (whole, cut short, or left by its client): what it reported replaces the
        estimate. With no reply at all (``result.status`` 0) this is ``release``."""
        if self.ended:
            return
        if result.status == 0:
            await self.release()
            return
        self.ended = True
        usage = result.usage
        charged_in = usage.input_tokens + usage.cache_creation_input_tokens
        if result.status >= 400 and not result.streamed:
            charged_in = 0  # an error reply consumed no tokens
        complete = result.status < 400 and result.error_type is None
        try:
            await self.lanes.settle(
                self.queue.lane,
                charged_in - self.ticket.input_tokens,
                usage.output_tokens - self.ticket.output_tokens,
            )
            if result.status < 400 and self.call.model:
                self.estimator.observe(self.call.model, len(self.call.body), charged_in, usage.output_tokens)
            if result.status < 500:
                self.probe = False  # the trial told: the upstream works
                if self.member.breaker.record_success():
                    await self.lanes.state.trip(breaker_flag(self.member.name), 0)
            else:
                await self._blame()
        finally:
            self._end(output_tokens=usage.output_tokens if complete else None)

    async def unserved(self, *, blame: bool = True) -> None:
        """The upstream did not serve the attempt (unreachable, an error worth retrying, a reply cut short
        before any of it was relayed): its tokens go back to the lane. ``blame``: the failure counts against
        the upstream's breaker."""
        if self.ended:
            return
        self.ended = True
        try:
            await self.lanes.refund(self.queue.lane, self.ticket.input_tokens, self.ticket.output_tokens)
            if blame:
                await self._blame()
        finally:
            self._end()

    async def throttled(self, retry_after: float | None) -> None:
        """The upstream answered 429: its tokens go back, and the lane dispatches nothing for
        ``retry_after`` seconds (one, if the upstream did not say). A throttled upstream is not failing."""
        if self.ended:
            return
        self.queue.pause(retry_after or 1.0)
        if self.alerts is not None:
            self.alerts.upstream_throttled(self.member.name, retry_after)
        await self.unserved(blame=False)

    async def release(self) -> None:
        """End the place with nothing known of the attempt: not sent, its tokens go back; sent (the client
        left or the call was cancelled while the upstream had it), the estimate stays charged, since the
        upstream counted the request when it arrived and nothing reported what it used."""
        if self.ended:
            return
        if not self.sent:
            await self.unserved(blame=False)
            return
        self.ended = True
        self._end()

    async def _blame(self) -> None:
        """Count a failure against the upstream; if that opens its breaker, tell the other processes."""
        member = self.member
        self.probe = False  # the trial told: the upstream is failing
        if member.breaker.record_failure(time.monotonic()):
            logger.warning("upstream %s is failing: its circuit breaker is open", member.name)
            if self.alerts is not None:
                self.alerts.breaker_opened(member.name, member.breaker.open_seconds)
            await self.lanes.state.trip(breaker_flag(member.name), member.breaker.open_seconds)

    def _end(self, output_tokens: int | None = None) -> None:
        seconds = time.perf_counter() - self.began if self.sent else 0.0
        if self.sent:
            self.member.in_flight -= 1
        if self.probe and self.member.breaker.state(time.monotonic()) is BreakerState.HALF_OPEN:
            self.member.breaker.release_probe()
        self.probe = False
        self.queue.finished(self.ticket, seconds, self.first_byte, output_tokens=output_tokens)


async def take_place(
    call: CallRequest,
    sink: ResponseSink,
    *,
    pool: UpstreamPool,
    queues: LaneQueues,
    estimator: TokenEstimator,
    estimate: LaneEstimate,
    failed_on: frozenset[str] = frozenset(),
    alerts: Alerts | None = None,
) -> LanePlace:
    """A place in the queue of the first upstream that can start the call before its deadline and whose
    breaker lets it through; upstreams that already failed this call come last. Raises RateLimitError
    (the soonest retry-after of the lanes that refused), OverloadedError (every breaker open), or ClientGone
    (the client left while waiting)."""
    candidates = pool.candidates(call.sticky_key)
    last_resort = not candidates
    if last_resort:
        candidates = pool.last_resort()
    if failed_on:
        candidates = sorted(candidates, key=lambda member: member.name in failed_on)
    identity = call.identity
    settings = identity.settings
    # Processes sharing the buckets (Redis) name places alike; one process alone keeps the cheaper hash.
    shared = not isinstance(queues.lanes.state, MemoryState)
    place_of = functools.partial(_shared_place_of if shared else _place_of, call)
    refusals: list[RateLimitError] = []
    for member in candidates:
        queue = queues.queue(member, estimate.rate_class)
        ticket = Ticket(
            org=str(identity.org_id),
            user=str(identity.user_id if identity.user_id is not None else f"key:{identity.key_id}"),
            input_tokens=estimate.input_tokens,
            output_tokens=estimate.output_tokens,
            deadline=call.deadline,
            streamed=call.stream,
            priority=call.priority,
            org_weight=settings.org_weight,
            user_weight=settings.user_weight,
            on_queued=call.on_queued,
            expected_output_tokens=estimate.expected_output_tokens,
            place=place_of,
            max_tokens=call.max_tokens,
        )
        try:
            await queue.admit(ticket, leave=sink.gone)
        except RateLimitError as refusal:
            refusals.append(refusal)
            continue
        except asyncio.CancelledError:
            # The queue gave back the turn (admission.py): nothing to return here.
            if sink.gone.is_set() and not cancelling():
                raise ClientGone from None  # the caller left while waiting for its turn
            raise
        place = LanePlace(call, member, queue, ticket, queues.lanes, estimator, alerts)
        now = time.monotonic()
        half_open = not last_resort and member.breaker.state(now) is BreakerState.HALF_OPEN
        if last_resort or member.breaker.allow(now):
            place.probe = half_open
            return place
        # A half-open breaker whose trial is already out: give the place back and try the next upstream.
        await place.unserved(blame=False)
    if refusals:
        raise min(refusals, key=lambda refusal: refusal.retry_after)
    raise OverloadedError("claudegate: every upstream is failing; retry shortly")


def _place_of(call: CallRequest) -> Hashable:
    """What tells a call apart when it comes back after a refusal: the same key sending the same request."""
    return (call.identity.key_id, call.path_and_query, hash(call.body))


def _shared_place_of(call: CallRequest) -> Hashable:
    """The same, as every gateway process sharing the buckets names it (``hash()`` of bytes differs from
    process to process; a caller may come back to another one: ``shared_turns``). Made only when a call must
    queue or was refused, never for a call that starts at once."""
    return place_digest(str(call.identity.key_id), call.path_and_query, call.body)
