"""Deadline-aware, fair admission to one lane (an upstream and a model class).

Calls wait here until the lane's buckets (requests, input and output tokens) and its concurrency allow them
to start. The order is fair: organisations share the lane by weight, and users share their organisation's
part by weight (two-level deficit round robin, decided when a call is dispatched, so late arrivals take
their turn); higher priorities go first. Because the order and the buckets' refill rates are known, the
start of every waiting call can be predicted. A call whose predicted start lies beyond its deadline is
refused at once with that prediction as its ``retry-after``, rather than left to time out in silence.

The upstream's buckets run a little behind the lane's: they start refilling when the first call of a burst
reaches the upstream, a network trip (a new connection's, the slowest) after the lane's did. A call therefore
starts only when the lane's buckets would keep ``headroom_s`` (``UPSTREAM_LAG_S`` in the gateway) of refill
in reserve after it, or a call started the moment the lane had refilled could reach an upstream that has not
quite, and be answered 429.
A bucket too small to hold the reserve beside a call (a lane allowed one request at a time) makes each call
wait that long instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from claudegate.errors import RateLimitError
from claudegate.flow.limits import LaneLimits
from claudegate.flow.state import FlowState

__all__ = ["UPSTREAM_LAG_S", "AdmissionQueue", "ReplyStart", "Ticket"]

logger = logging.getLogger(__name__)

UPSTREAM_LAG_S = 0.5

_SMOOTHING = 0.2
_INITIAL_CALL_SECONDS = 5.0  # until calls have been timed, a call is assumed to hold its slot this long
_SPREAD = 3.0  # a start is judged against the mean plus this many mean deviations


class ReplyStart:
    """How long after dispatch a reply's first byte arrives: a running mean and mean absolute deviation.

    Admission needs a high estimate, not the mean: a call admitted when its start plus the *mean* just fits
    misses its deadline whenever its reply is slower than average, which is half the time. Before any reply
    has been timed nothing is assumed (a guess would refuse calls against a fast upstream, or admit them
    against a slow one); the first reply starts the estimate with a wide spread, which later ones narrow.
    """

    __slots__ = ("deviation", "mean", "samples")

    def __init__(self) -> None:
        self.mean = 0.0
        self.deviation = 0.0
        self.samples = 0

    def observe(self, seconds: float) -> None:
        if self.samples == 0:
            self.mean, self.deviation = seconds, seconds / 2
        else:
            self.deviation = (1 - _SMOOTHING) * self.deviation + _SMOOTHING * abs(seconds - self.mean)
            self.mean = (1 - _SMOOTHING) * self.mean + _SMOOTHING * seconds
        self.samples += 1

    @property
    def bound(self) -> float:
        return self.mean + _SPREAD * self.deviation


@dataclass(eq=False, slots=True)
class Ticket:
    """One call's place in a lane's queue."""

    org: str
    user: str
    input_tokens: float
    output_tokens: float
    deadline: float  # on the queue's clock: by when the reply must have begun
    streamed: bool = False  # a stream begins with its first token; a JSON reply only once complete
    reply_start: float = 0.0  # the lane's estimate of dispatch-to-first-byte when the call was admitted
    priority: int = 0
    org_weight: float = 1.0
    user_weight: float = 1.0
    on_queued: Callable[[int, float], None] | None = None  # hears (position, predicted wait) when queued
    position: int = 0  # 1-based place in the predicted order while waiting
    predicted_wait: float = 0.0  # seconds from enqueueing to the predicted start
    future: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def cost(self) -> float:
        # Fairness counts requests and tokens: a call that asks for a lot uses more of the lane.
        return 1.0 + (self.input_tokens + self.output_tokens) / 1000.0


class AdmissionQueue:
    """The waiting room of one lane. ``await admit(ticket)`` returns when the call may start; call
    ``finished(...)`` when it ends so its concurrency slot is freed."""

    def __init__(
        self,
        lane: LaneLimits,
        state: FlowState,
        *,
        max_concurrency: int,
        clock: Callable[[], float] = time.monotonic,
        headroom_s: float = 0.0,
    ) -> None:
        self.lane = lane
        self._state = state
        self._max_concurrency = max_concurrency
        self._headroom_s = headroom_s
        self._clock = clock
        # priority -> org -> user -> calls in arrival order
        self._waiting: dict[int, dict[str, dict[str, deque[Ticket]]]] = {}
        self._org_served: dict[str, float] = {}
        self._user_served: dict[tuple[str, str], float] = {}
        self.in_flight = 0
        self._call_seconds = _INITIAL_CALL_SECONDS
        self._reply_start = {True: ReplyStart(), False: ReplyStart()}
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._paused_until = 0.0

    # -- the caller's side --------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return sum(
            len(calls)
            for orgs in self._waiting.values()
            for users in orgs.values()
            for calls in users.values()
        )

    async def admit(self, ticket: Ticket, leave: asyncio.Event | None = None) -> None:
        """Wait for the ticket's turn; raise RateLimitError (429) at once if it cannot start in time.

        ``leave`` is set when the caller goes away while waiting: the ticket then leaves the queue and
        ``asyncio.CancelledError`` is raised (the task itself was not cancelled; the caller tells apart).
        """
        now = self._clock()
        if await self._start_at_once(ticket, now):
            return
        self._enqueue(ticket)
        wait = await self._predict(ticket, now)
        # The estimate is fixed for the call when it is admitted: later replies may move the lane's estimate,
        # but a call told it would start in time keeps that promise rather than being refused late.
        ticket.reply_start = self.reply_start(ticket.streamed)
        if now + wait + ticket.reply_start > ticket.deadline:
            self._remove(ticket)
            raise self._refusal(ticket, wait)
        ticket.predicted_wait = wait
        if ticket.on_queued is not None and wait > 0:
            try:
                ticket.on_queued(ticket.position, wait)
            except Exception:
                # The caller's callback runs inside the queue: an exception escaping here would leave the
                # ticket queued for nobody. Log it; the call keeps its place.
                logger.exception("an on_queued callback raised; the call keeps its place")
        ticket.future = asyncio.get_running_loop().create_future()
        self._wake.set()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        watcher = self._watch_leave(ticket.future, leave) if leave is not None else None
        try:
            await ticket.future
        except asyncio.CancelledError:
            if not ticket.future.done() or ticket.future.cancelled():
                self._remove(ticket)
            elif ticket.future.exception() is None:
                self.finished(0.0, None)  # admitted just as the caller went away: free the slot
            raise
        finally:
            if watcher is not None:
                watcher.cancel()

    @staticmethod
    def _watch_leave(future: asyncio.Future[None], leave: asyncio.Event) -> asyncio.Task[bool]:
        """Cancel a waiting ticket's future when its caller leaves (only waiting calls pay for this task)."""
        watcher = asyncio.get_running_loop().create_task(leave.wait())

        def cancel(_: asyncio.Task[bool]) -> None:
            if leave.is_set() and not future.done():
                future.cancel()

        watcher.add_done_callback(cancel)
        return watcher

    def finished(self, seconds: float, first_byte_seconds: float | None, *, streamed: bool = False) -> None:
        """A call admitted here has ended; learn its duration and when its reply began; free its slot."""
        self.in_flight = max(0, self.in_flight - 1)
        if seconds > 0:
            self._call_seconds = (1 - _SMOOTHING) * self._call_seconds + _SMOOTHING * seconds
        if first_byte_seconds is not None:
            self._reply_start[streamed].observe(first_byte_seconds)
        self._wake.set()

    def reply_start(self, streamed: bool) -> float:
        """A high estimate of the time from dispatch to the first byte of a reply."""
        return self._reply_start[streamed].bound

    def pause(self, seconds: float) -> None:
        """Dispatch nothing for a while (the upstream said ``retry-after``)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)
        self._wake.set()

    # -- order --------------------------------------------------------------------------------------------

    def _enqueue(self, ticket: Ticket) -> None:
        orgs = self._waiting.setdefault(ticket.priority, {})
        if ticket.org not in orgs:
            # An organisation that starts waiting joins at the current round, not with credit saved up
            # from idle time (which would let it starve the others for a while).
            active = [self._org_served.get(org, 0.0) for org in orgs]
            floor = min(active) if active else max(self._org_served.values(), default=0.0)
            self._org_served[ticket.org] = max(self._org_served.get(ticket.org, 0.0), floor)
        users = orgs.setdefault(ticket.org, {})
        if ticket.user not in users:
            active_users = [self._user_served.get((ticket.org, u), 0.0) for u in users]
            floor = min(active_users) if active_users else 0.0
            key = (ticket.org, ticket.user)
            self._user_served[key] = max(self._user_served.get(key, 0.0), floor)
        users.setdefault(ticket.user, deque()).append(ticket)

    def _remove(self, ticket: Ticket) -> None:
        users = self._waiting.get(ticket.priority, {}).get(ticket.org, {})
        calls = users.get(ticket.user)
        if calls is not None and ticket in calls:
            calls.remove(ticket)
            self._prune(ticket)
            self._wake.set()

    def _prune(self, ticket: Ticket) -> None:
        orgs = self._waiting.get(ticket.priority, {})
        users = orgs.get(ticket.org, {})
        if not users.get(ticket.user):
            users.pop(ticket.user, None)
        if not users:
            orgs.pop(ticket.org, None)
        if not orgs:
            self._waiting.pop(ticket.priority, None)

    def _order(self) -> Iterator[Ticket]:
        """Waiting calls in the order they will be dispatched (a dry run of the fair choice)."""
        org_served = dict(self._org_served)
        user_served = dict(self._user_served)
        for priority in sorted(self._waiting, reverse=True):
            queues = {
                org: {u: list(calls) for u, calls in users.items()}
                for org, users in self._waiting[priority].items()
            }
            while queues:
                org = min(queues, key=lambda o: (org_served[o], o))
                users = queues[org]
                user = min(users, key=lambda u: (user_served[(org, u)], u))
                ticket = users[user].pop(0)
                org_served[org] += ticket.cost / ticket.org_weight
                user_served[(org, user)] += ticket.cost / ticket.user_weight
                if not users[user]:
                    del users[user]
                if not users:
                    del queues[org]
                yield ticket

    def _next(self) -> Ticket | None:
        return next(self._order(), None)

    # -- prediction ---------------------------------------------------------------------------------------

    async def _predict(self, ticket: Ticket, now: float) -> float:
        """Seconds until ``ticket`` is predicted to start, from the order and the buckets' refill rates."""
        lane = self.lane
        needs = [0.0, 0.0, 0.0]  # what the buckets must hold for this ticket to start: requests, in, out
        position = 0
        for position, queued in enumerate(self._order(), start=1):  # noqa: B007 - position is used below
            demands = lane.demands(queued.input_tokens, queued.output_tokens)
            for index, (spec, amount) in enumerate(demands):
                needed, taken = spec.reserve(amount, self._headroom_s)
                needs[index] += needed if queued is ticket else taken
            if queued is ticket:
                break
        ticket.position = position
        levels = await self._state.levels([lane.requests, lane.input_tokens, lane.output_tokens])
        bucket_wait = 0.0
        for spec, level, needed in zip(
            (lane.requests, lane.input_tokens, lane.output_tokens), levels, needs, strict=True
        ):
            if needed > level:
                bucket_wait = max(bucket_wait, (needed - level) / spec.rate)
        free_slots = self._max_concurrency - self.in_flight
        slot_wait = 0.0
        if position > free_slots:
            rounds = math.ceil((position - free_slots) / self._max_concurrency)
            slot_wait = rounds * self._call_seconds
        return max(bucket_wait, slot_wait, self._paused_until - now)

    def _refusal(self, ticket: Ticket, wait: float) -> RateLimitError:
        return RateLimitError(
            f"claudegate: this call cannot start before its deadline: it would be number {ticket.position} "
            f"in the queue for {self.lane.lane}, with a predicted wait of {wait:.1f} s. Retry after that, "
            "or allow a later deadline (x-claudegate-deadline-ms).",
            retry_after=max(wait, 0.001),
        )

    # -- dispatch -----------------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            ticket = self._next()
            if ticket is None:
                return
            now = self._clock()
            assert ticket.future is not None
            if now + ticket.reply_start > ticket.deadline:
                self._remove(ticket)
                wait = await self._predict_fresh(now)
                if not ticket.future.done():
                    ticket.future.set_exception(self._refusal(ticket, wait))
                continue
            delay = self._paused_until - now
            if delay <= 0 and self.in_flight >= self._max_concurrency:
                delay = math.inf  # until a call finishes
            if delay <= 0:
                delay = await self._state.try_take(
                    self.lane.demands(ticket.input_tokens, ticket.output_tokens), self._headroom_s
                )
                if math.isinf(delay):
                    self._remove(ticket)
                    ticket.future.set_exception(
                        RateLimitError(
                            f"claudegate: this call needs more tokens than {self.lane.lane} allows at once",
                            retry_after=60,
                        )
                    )
                    continue
                if delay == 0:
                    self._take_turn(ticket)
                    continue
            self._wake.clear()
            timeout = min(delay, max(0.0, ticket.deadline - ticket.reply_start - now))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout if math.isfinite(timeout) else None)

    async def _start_at_once(self, ticket: Ticket, now: float) -> bool:
        """The common case, without queueing: nobody waits, a slot is free and the buckets have room.

        The full path (predicting the order, a future, the dispatcher) is for calls that must wait; most
        calls of an account that is not saturated should cost one bucket check.
        """
        if self._waiting or self.in_flight >= self._max_concurrency or self._paused_until > now:
            return False
        if now + self.reply_start(ticket.streamed) > ticket.deadline:
            return False  # the full path refuses it, with a prediction
        demands = self.lane.demands(ticket.input_tokens, ticket.output_tokens)
        if await self._state.try_take(demands, self._headroom_s) != 0:
            return False
        ticket.position = 1
        self._count_turn(ticket)
        return True

    def _count_turn(self, ticket: Ticket) -> None:
        """A call starts: charge its organisation's and user's fair shares, and take a slot."""
        self._org_served[ticket.org] = self._org_served.get(ticket.org, 0.0) + ticket.cost / ticket.org_weight
        key = (ticket.org, ticket.user)
        self._user_served[key] = self._user_served.get(key, 0.0) + ticket.cost / ticket.user_weight
        self.in_flight += 1

    def _take_turn(self, ticket: Ticket) -> None:
        self._remove(ticket)
        self._count_turn(ticket)
        assert ticket.future is not None
        if ticket.future.done():  # the caller went away at this very moment
            self.in_flight -= 1
            return
        ticket.future.set_result(None)

    async def _predict_fresh(self, now: float) -> float:
        """The wait a call joining the back of the queue now would be told."""
        probe = Ticket(org="\uffff", user="", input_tokens=0, output_tokens=0, deadline=math.inf)
        self._enqueue(probe)
        try:
            return await self._predict(probe, now)
        finally:
            self._remove(probe)
