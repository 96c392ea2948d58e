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

Gateway processes that share the buckets (through Redis) tell each other how many calls they have queued and
what those will take (``FlowState.share_demand``): each process's dispatcher takes for its head call when
the buckets allow, so the processes with calls waiting take turns, and a prediction counts as many of each
other process's calls ahead as of its own (``_others_ahead``). Fair order and kept turns are per process.

A refused call keeps its turn. Its ``retry-after`` is the predicted start of its turn, rounded up to a whole
second, and the queue keeps a *hold* for it (matched by the call's ``place``: its key and body) until
shortly after that time: when the call comes back it goes first, rather than behind everything that
arrived while it was away, and until then newer calls may start only if they leave the buckets what it will
need then, so that it starts at once. Callers do not all come back (the bot, a client without retries), so
the turns before a hold count at the rate at which holds have been claimed, and a hold whose caller is not
back soon after its time lapses and frees its tokens: an absent caller delays others by little, and takes
nothing from them in the end (the buckets keep the tokens). A call queued now is predicted behind the holds
it cannot leave their tokens to, until they lapse; holds kept after it was queued were predicted behind it
and do not hold it up. A new hold may fall between earlier ones only if it leaves them their tokens too.

A call takes its reservation of output when it starts (a little more than it is expected to produce, so
that a long reply does not put the lane in debt) and gives back the difference when it settles, or takes
what it produced beyond it. Predictions count both. What the calls in flight will give back or owe, and
when, is judged from the lane's recent replies (see ``projection``: a call still running after most replies
have ended is a long one, which will owe); the calls queued ahead give back their expected surplus over
about a call's duration once started. A start predicted soon, before much has come back, counts the
reservations; one predicted further off counts what calls are expected to produce. A refused caller is told
a cautious time, when its turn is ready unless the calls before it produce much more than expected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import statistics
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, NoReturn

from claudegate.errors import RateLimitError
from claudegate.flow.limits import LaneLimits
from claudegate.flow.projection import (
    CAUTION_Z,
    InFlight,
    Projection,
    Reply,
    bucket_ready,
    bucket_wait,
    returns_by_step,
)
from claudegate.flow.state import FlowState

__all__ = ["UPSTREAM_LAG_S", "AdmissionQueue", "ReplyStart", "Ticket"]

logger = logging.getLogger(__name__)

UPSTREAM_LAG_S = 0.5

_SMOOTHING = 0.2
_INITIAL_CALL_SECONDS = 5.0  # until calls have been timed, a call is assumed to hold its slot this long
_SPREAD = 3.0  # until enough replies are timed, a start is judged against the mean and this many deviations
_WINDOW = 100  # replies the estimate of when a reply begins is taken from
_QUANTILE = 0.98  # ... as this quantile of them
_QUANTILE_SAMPLES = 20  # ... once there are this many
# With no reply timed for this long, the estimate of when replies begin starts to fade (halving every
# _STALE_HALF_LIFE_S): otherwise an estimate raised past every deadline by a few slow replies would refuse
# every later call, and nothing would ever be timed again to bring it down.
_STALE_AFTER_S = 30.0
_STALE_HALF_LIFE_S = 60.0
# Until a reply has been timed, a call that must wait is promised a start only if its deadline leaves room
# for the longest reply it may get: the first byte within this long ...
_UNTIMED_FIRST_BYTE_S = 2.0
# ... and, for a JSON reply, which arrives only once complete, its max_tokens at this speed. A reply rarely
# uses all of its max_tokens, so a typical speed still makes a high estimate; a slower one would refuse
# the short calls a chat bot queues behind a burst, which a typical upstream answers in time ...
_UNTIMED_TOKENS_PER_S = 60.0
# ... or, when the call's max_tokens is not known, this long.
_UNTIMED_JSON_REPLY_S = 60.0
# A hold lapses this long after the time its caller was told, plus a share of the wait: long enough for the
# network and a busy client, short enough that the tokens kept for an absent caller soon go to others.
_HOLD_GRACE_S = 0.5
_HOLD_GRACE_SHARE = 0.05
_EARLY_S = 0.25  # a caller back this much (plus a share of the wait) before its turn is early
_EARLY_SHARE = 0.1
# The share of holds claimed by their callers is counted over this many recent holds, starting from one
# claimed and one not (so 0.5 before any hold has ended, and never quite 0 or 1).
_SHOW_WINDOW = 50
# What calls in flight will give back (or owe) is judged from the lane's recent replies, their durations and
# output (see ``projection``): this many of them, once there are at least ``_SETTLING_SAMPLES``; until then
# each call in flight is assumed to give back the average surplus of its reservation.
_REPLY_WINDOW = 100
_SETTLING_SAMPLES = 10
# Gateway processes sharing the lane's buckets (through Redis) tell each other what they have queued; a
# process that stops telling (it died) stops counting after this long.
_DEMAND_TTL_S = 10.0


class ReplyStart:
    """How long after dispatch a reply's first byte arrives: a high estimate, from recent replies.

    Admission needs a high estimate, not the mean: a call admitted when its start plus the *mean* just fits
    misses its deadline whenever its reply is slower than average, which is half the time. Once enough
    replies have been timed, the estimate is a high quantile of the recent ones (``_QUANTILE``); before
    that, the mean plus ``_SPREAD`` mean deviations, which starts wide and narrows. A quantile follows a
    skewed distribution (a non-streamed reply begins when it is complete, and replies vary in length) where
    the mean plus deviations would overshoot its longest value and refuse every call. Before any reply has
    been timed nothing is assumed (a guess would refuse calls against a fast upstream, or admit them
    against a slow one) for calls that start at once; a call that must wait is promised a start only if
    its deadline leaves room for a long reply (``promise``).
    """

    __slots__ = ("_bound", "deviation", "mean", "observed_at", "recent", "samples")

    def __init__(self) -> None:
        self.mean = 0.0
        self.deviation = 0.0
        self.samples = 0
        self.observed_at = 0.0
        self.recent: deque[float] = deque(maxlen=_WINDOW)
        self._bound: float | None = 0.0  # None: to be computed again

    def observe(self, seconds: float, now: float) -> None:
        if self.samples == 0:
            self.mean, self.deviation = seconds, seconds / 2
        else:
            self.deviation = (1 - _SMOOTHING) * self.deviation + _SMOOTHING * abs(seconds - self.mean)
            self.mean = (1 - _SMOOTHING) * self.mean + _SMOOTHING * seconds
        self.samples += 1
        self.observed_at = now
        self.recent.append(seconds)
        self._bound = None

    def bound(self, now: float, *, fade: bool = True) -> float:
        """The estimate for a call starting now; ``fade``: lowered while no reply has been timed for a
        while (see ``_STALE_AFTER_S``)."""
        estimate = self._bound
        if estimate is None:
            if len(self.recent) >= _QUANTILE_SAMPLES:
                ordered = sorted(self.recent)
                estimate = ordered[min(len(ordered) - 1, int(_QUANTILE * len(ordered)))]
            else:
                estimate = self.mean + _SPREAD * self.deviation
            self._bound = estimate
        stale = now - self.observed_at - _STALE_AFTER_S
        if fade and self.samples and stale > 0:
            estimate *= 0.5 ** (stale / _STALE_HALF_LIFE_S)
        return estimate

    def promise(self, now: float, untimed: float) -> float:
        """The estimate a call that must wait for its turn is admitted on. It does not fade: fading lets
        calls that start at once be timed again after slow replies, while a wait promised on a faded estimate
        would be a guess. Before any reply has been timed it is ``untimed``, a long reply's time: a call
        queued behind a burst cannot know how long its own reply will take (the first replies to finish are
        the short ones, too late for its promise anyway), so only a deadline that leaves room for a long
        reply is kept."""
        return self.bound(now, fade=False) if self.samples else untimed


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
    # The output the call is expected to produce (``output_tokens`` is what is reserved for it, a little
    # more); predictions use this. None: the reservation.
    expected_output_tokens: float | None = None
    # Names the call so that it is known again when it comes back after a refusal (its key and body); a
    # refused call with a place keeps its turn for a while. Called only when needed (hashing a body costs).
    place: Callable[[], Hashable] | None = field(default=None, repr=False)
    max_tokens: int | None = None  # the most output the call may produce; None: not known
    position: int = 0  # 1-based place in the predicted order while waiting
    predicted_wait: float = 0.0  # seconds from enqueueing to the predicted start
    # When it joined the queue: turns kept after that were predicted behind it, so they do not hold it up.
    queued_at: float = field(default=math.inf, repr=False)
    started_at: float = field(default=math.inf, repr=False)  # when it took its tokens and a slot
    future: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def expected_output(self) -> float:
        return self.output_tokens if self.expected_output_tokens is None else self.expected_output_tokens

    @property
    def cost(self) -> float:
        # Fairness counts requests and tokens: a call that asks for a lot uses more of the lane.
        return 1.0 + (self.input_tokens + self.output_tokens) / 1000.0


class _Prediction(NamedTuple):
    """When a waiting call is predicted to start, in seconds from now."""

    wait: float  # in the queue, as expected
    longest: float  # in the queue, if the replies ahead run long (cautious): what admission is judged by
    back: float  # coming back to a turn kept for it instead (cautious): what a refused call is told


@dataclass(slots=True)
class _Hold:
    """The kept turn of a refused call: when it was told to come back, and what it will need then."""

    made: float
    due: float
    early: float  # a caller back sooner than this did not wait as told: it queues as a new call
    lapses: float  # when the turn, and the tokens kept for it, are given up
    # What the buckets (requests, input, output) must hold at ``due`` for the call to start at once: newer
    # calls may not take it.
    needs: tuple[float, float, float]
    # What the call is expected to take if it comes back (expected rather than reserved output), for
    # predictions and for the holds due after it, at the rate callers come back.
    takes: tuple[float, float, float]


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
        # Refused calls that came back to their kept turn: they go before anyone else.
        self._returning: deque[Ticket] = deque()
        self._holds: dict[Hashable, _Hold] = {}
        self._shows: deque[bool] = deque(maxlen=_SHOW_WINDOW)  # recent holds: claimed or lapsed
        self._org_served: dict[str, float] = {}
        self._user_served: dict[tuple[str, str], float] = {}
        self._running: set[Ticket] = set()  # calls started here that have not finished
        self._call_seconds = _INITIAL_CALL_SECONDS
        self._reply_start = {True: ReplyStart(), False: ReplyStart()}
        # Output reserved beyond what a call is expected to produce, on average: what each call in flight
        # is assumed to give back when it settles, until the lane has timed enough replies
        # (``_output_returns``).
        self._surplus_output = 0.0
        # Recent complete replies: how long each call ran, from its start here, and the output it produced.
        self._replies: deque[Reply] = deque(maxlen=_REPLY_WINDOW)
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._paused_until = 0.0
        # What each other gateway process sharing the lane's buckets has queued (calls, then what they will
        # take: requests, input, output), as last heard, and whether this queue changed since it told them.
        self._member = secrets.token_hex(8)
        self._others_queued: list[list[float]] = []
        self._queue_changed = False

    # -- the caller's side --------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Calls waiting for their turn."""
        queued = 0
        for orgs in self._waiting.values():
            for users in orgs.values():
                queued += sum(len(calls) for calls in users.values())
        return len(self._returning) + queued

    @property
    def in_flight(self) -> int:
        """Calls started here that have not finished."""
        return len(self._running)

    @property
    def holds(self) -> int:
        """Turns kept for refused calls that have not come back yet."""
        return len(self._holds)

    async def admit(self, ticket: Ticket, leave: asyncio.Event | None = None) -> None:
        """Wait for the ticket's turn; raise RateLimitError (429) at once if it cannot start in time.

        ``leave`` is set when the caller goes away while waiting: the ticket then leaves the queue and
        ``asyncio.CancelledError`` is raised (the task itself was not cancelled; the caller tells apart).
        """
        now = self._clock()
        returning = self._claim_hold(ticket, now) if self._holds else False
        if not returning:
            if await self._start_at_once(ticket, now):
                return
            self._enqueue(ticket)
            ticket.queued_at = now
        if self._queue_changed:
            await self._share_queued()
        prediction = await self._predict(ticket, now)
        wait = prediction.wait
        # The estimate is fixed for the call when it is admitted: later replies may move the lane's estimate,
        # but a call told it would start in time keeps that promise rather than being refused late.
        estimate = self._reply_start[ticket.streamed]
        ticket.reply_start = estimate.bound(now) if wait <= 0 else estimate.promise(now, _slow_reply(ticket))
        margin = self._claim_margin(wait, now) if self._holds and not returning else 0.0
        # A call is queued only if it starts in time even when the replies ahead run long: otherwise it
        # would be refused after waiting, not at once.
        if now + prediction.longest + margin + ticket.reply_start > ticket.deadline:
            self._refuse(ticket, prediction, now)
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
                self.finished(ticket, 0.0, None)  # admitted just as the caller went away: free the slot
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

    def finished(
        self,
        ticket: Ticket,
        seconds: float,
        first_byte_seconds: float | None,
        *,
        output_tokens: int | None = None,
    ) -> None:
        """A call admitted here has ended: free its slot, and learn how long it took (``seconds``), when its
        reply began, and (``output_tokens``, for a reply that came complete) how much it produced."""
        self._running.discard(ticket)
        if seconds > 0:
            self._call_seconds = (1 - _SMOOTHING) * self._call_seconds + _SMOOTHING * seconds
        now = self._clock()
        if first_byte_seconds is not None:
            self._reply_start[ticket.streamed].observe(first_byte_seconds, now)
        if output_tokens is not None and math.isfinite(ticket.started_at):
            self._replies.append(Reply(now - ticket.started_at, output_tokens))
        self._wake.set()

    def reply_start(self, streamed: bool) -> float:
        """A high estimate of the time from dispatch to the first byte of a reply."""
        return self._reply_start[streamed].bound(self._clock())

    def pause(self, seconds: float) -> None:
        """Dispatch nothing for a while (the upstream said ``retry-after``)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)
        self._wake.set()

    # -- holds: the kept turns of refused calls -----------------------------------------------------------

    def _refuse(self, ticket: Ticket, prediction: _Prediction, now: float) -> NoReturn:
        """Refuse a call that cannot start in time, keeping its turn for it if it can be known again: it is
        told to come back when its turn will start (``prediction.back``)."""
        self._remove(ticket)
        place = ticket.place() if ticket.place is not None else None
        if place is None:
            raise self._refusal(ticket, prediction._replace(back=prediction.longest))
        # The turn is kept at a whole second: callers that read retry-after (whole seconds, rounded up) and
        # those that read retry-after-ms then come back together, and the tokens kept for a caller that does
        # not are soon free again.
        back = _told(prediction.back)
        if place not in self._holds:  # an identical call's kept turn is enough
            early = now + back - _EARLY_S - _EARLY_SHARE * back
            lapse_in = back + _HOLD_GRACE_S + _HOLD_GRACE_SHARE * back
            needs = self._needed(ticket.input_tokens, ticket.output_tokens)
            takes = self._taken(ticket.input_tokens, ticket.expected_output)
            hold = _Hold(
                now,
                now + back,
                early,
                now + lapse_in,
                (needs[0], needs[1], needs[2]),
                (takes[0], takes[1], takes[2]),
            )
            self._holds[place] = hold
            asyncio.get_running_loop().call_later(lapse_in, self._lapse, place, hold)
        raise self._refusal(ticket, prediction._replace(back=back))

    def _claim_hold(self, ticket: Ticket, now: float) -> bool:
        """Whether this call is a refused one coming back to its kept turn; if so it goes first."""
        hold = self._holds.pop(ticket.place(), None) if ticket.place is not None else None
        if hold is None:
            return False
        # A caller back well before its turn waits behind those who came before it: it takes no turn of
        # anyone's, so for predictions its hold counts as one not claimed.
        early = now < hold.early
        self._shows.append(not early)
        if early:
            return False
        self._returning.append(ticket)
        self._queue_changed = True
        return True

    def _lapse(self, place: Hashable, hold: _Hold) -> None:
        """A hold's caller did not come back in time: its turn is no longer kept."""
        if self._holds.get(place) is hold:
            del self._holds[place]
            self._shows.append(False)
            self._wake.set()  # the tokens kept for it are free

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
        self._queue_changed = True

    def _remove(self, ticket: Ticket) -> None:
        if ticket in self._returning:
            self._returning.remove(ticket)
            self._queue_changed = True
            self._wake.set()
            return
        users = self._waiting.get(ticket.priority, {}).get(ticket.org, {})
        calls = users.get(ticket.user)
        if calls is not None and ticket in calls:
            calls.remove(ticket)
            self._prune(ticket)
            self._queue_changed = True
            self._wake.set()

    async def _share_queued(self) -> None:
        """Tell the other gateway processes sharing the lane's buckets how many calls wait here and what they
        will take (requests, input, output), and hear the same of theirs (see ``_others_ahead``)."""
        self._queue_changed = False
        queued = [0.0, 0.0, 0.0, 0.0]
        waiting = [
            *self._returning,
            *(
                ticket
                for orgs in self._waiting.values()
                for users in orgs.values()
                for calls in users.values()
                for ticket in calls
            ),
        ]
        for ticket in waiting:
            queued[0] += 1
            for index, take in enumerate(self._taken(ticket.input_tokens, ticket.output_tokens), start=1):
                queued[index] += take
        others = await self._state.share_demand(self.lane.lane, self._member, queued, _DEMAND_TTL_S)
        self._others_queued = [record for record in others if len(record) == len(queued) and record[0] > 0]

    def _others_ahead(self, position: int) -> list[float]:
        """What calls queued by other gateway processes sharing the buckets will take (requests, input,
        output) before the call at ``position`` here starts. Each process's dispatcher takes for the call at
        the head of its queue when the buckets allow, so the processes with calls waiting take turns: about
        as many of each one's calls go first as of this one's (and half a call more: who takes first in a
        round is a race)."""
        ahead = [0.0, 0.0, 0.0]
        for count, *takes in self._others_queued:
            share = min(count, position - 0.5) / count
            for index, take in enumerate(takes):
                ahead[index] += share * take
        return ahead

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
        yield from self._returning
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

    async def _predict(self, ticket: Ticket, now: float) -> _Prediction:
        """When ``ticket`` is predicted to start if it waits in the queue now (as expected, and if the
        replies ahead run long), and if it comes back to a turn kept for it instead (the same for a call
        already back), from the order and the buckets' refill rates.

        The calls ahead take their reservations and give back what they are not expected to use as they
        settle (see the module), and a kept turn counts as much as its caller is likely to come back; the
        call's own needs are counted in full (with the lane's reserve), since it starts only once they are
        there.
        """
        lane = self.lane
        needs = [0.0, 0.0, 0.0]  # what the buckets must hold for this ticket to start: requests, in, out
        own_needs = [0.0, 0.0, 0.0]  # the ticket's own part of it (with the lane's reserve) ...
        own_taken = [0.0, 0.0, 0.0]  # ... and what it takes when it starts
        position = 0
        returns = 0.0  # what the calls ahead will give back when they settle
        for position, queued in enumerate(self._order(), start=1):  # noqa: B007 - position is used below
            own = queued is ticket
            for index, (spec, amount) in enumerate(lane.demands(queued.input_tokens, queued.output_tokens)):
                needed, taken = spec.reserve(amount, self._headroom_s)
                if own:
                    own_needs[index], own_taken[index] = needed, taken
                needs[index] += needed if own else taken
            if own:
                break
            returns += queued.output_tokens - queued.expected_output
        ticket.position = position
        # Calls queued by other gateway processes sharing the buckets take from them too.
        if self._others_queued:
            needs = [need + other for need, other in zip(needs, self._others_ahead(position), strict=True)]
        buckets = await self._projections(give_back=True, ahead=returns, ahead_calls=position - 1)
        # A caller told to come back finds its turn ready then unless the calls before it produce much more
        # than expected: it is told a cautious time (coming back to a turn not ready, it would be refused
        # again and lose a whole round; told a little late, it loses only that).
        cautious = [bucket.cautious() for bucket in buckets]
        # Callers already back at their kept turn go in the order they came; others wait for kept turns too.
        if self._holds and ticket not in self._returning:
            holds = sorted(self._holds.values(), key=lambda hold: hold.due)
            # The part of its own needs that stays in the buckets when it starts (the lane's reserve).
            reserve = [need - take for need, take in zip(own_needs, own_taken, strict=True)]
            back = self._back_wait(holds, cautious, needs, reserve=reserve, now=now)
            wait = self._queued_wait(holds, buckets, cautious, needs, own=own_needs, reserve=reserve, now=now)
            longest = self._queued_wait(
                holds, cautious, cautious, needs, own=own_needs, reserve=reserve, now=now
            )
        else:
            wait = bucket_wait(buckets, needs)
            longest = bucket_wait(cautious, needs)
            back = bucket_ready(cautious, needs)
        free_slots = self._max_concurrency - self.in_flight
        slot_wait = 0.0
        if position > free_slots:
            rounds = math.ceil((position - free_slots) / self._max_concurrency)
            slot_wait = rounds * self._call_seconds
        least = max(slot_wait, self._paused_until - now)
        return _Prediction(max(wait, least), max(wait, longest, least), max(back, least))

    def _back_wait(
        self,
        holds: list[_Hold],
        buckets: list[Projection],
        needs: list[float],
        *,
        reserve: list[float],
        now: float,
    ) -> float:
        """When a call refused now would start if it came back to its kept turn: callers back at their turns
        go first, so it starts after the turns due before it (as far as their callers come back), but it is
        not held up by tokens kept for callers still away. The buckets must hold its needs from then on
        (``bucket_ready``), not only for a moment before a debt lands.

        A turn kept before turns already kept (in a gap between them) must leave each of those what it
        needs, as a queued call must (``_leaves``; ``reserve`` is the part of the call's own needs that
        stays in the buckets): its caller, back first, would take it. Otherwise it goes after that turn."""
        show_rate = self._show_rate
        wait = bucket_ready(buckets, needs)
        behind: list[float] = [0.0, 0.0, 0.0]  # expected takes of kept turns this one goes before
        for hold in holds:
            start = now + _told(wait)  # turns are kept at whole seconds (see _refuse)
            if hold.due > start:
                taken = [need - kept for need, kept in zip(needs, reserve, strict=True)]
                if self._leaves(hold, buckets, buckets, taken, behind, start=start, now=now) >= 0:
                    behind = _with_share(behind, hold, show_rate)
                    continue
            # It goes after this turn, and so after the turns it would have gone before.
            needs = [need + ahead for need, ahead in zip(needs, behind, strict=True)]
            needs = _with_share(needs, hold, show_rate)
            behind = [0.0, 0.0, 0.0]
            wait = bucket_ready(buckets, needs)
        return wait

    def _queued_wait(
        self,
        holds: list[_Hold],
        buckets: list[Projection],
        cautious: list[Projection],
        needs: list[float],
        *,
        own: list[float],
        reserve: list[float],
        now: float,
    ) -> float:
        """When a call queued now (needing ``own``, of which ``reserve`` stays in the buckets when it starts)
        would start: like one coming back to a kept turn, but it may not take the tokens kept for a caller
        still away (``_hold_delay``), so it also waits for turns due after its start unless the buckets hold
        enough for both, or until they lapse.

        What it leaves a turn is judged as the dispatcher will judge it at its start: by what it takes (the
        reserve it needs at its start stays in the buckets for the turns after it), counting cautiously on
        what comes back after its start (``_leaves``)."""
        show_rate = self._show_rate
        wait = bucket_wait(buckets, needs)
        floor = 0.0
        behind: list[float] = [0.0, 0.0, 0.0]  # expected takes of kept turns this call goes before
        for hold in holds:
            start = now + wait
            if start >= hold.lapses:  # given up before this call starts: taken as far as callers come back
                needs = _with_share(needs, hold, show_rate)
                wait = max(floor, bucket_wait(buckets, needs))
                continue
            taken = [need - kept for need, kept in zip(needs, reserve, strict=True)]
            if self._leaves(hold, buckets, cautious, taken, behind, start=start, now=now) >= 0:
                # It starts first and leaves what is kept for the turn, which then takes its share after it.
                behind = _with_share(behind, hold, show_rate)
                continue
            # It goes after the turn: it starts once the buckets hold enough for both, or the turn lapses.
            both = [n + need for n, need in zip(needs, hold.needs, strict=True)]
            fits = all(
                o + need <= b.spec.capacity for o, need, b in zip(own, hold.needs, buckets, strict=True)
            )
            sooner = bucket_wait(buckets, both) if fits else math.inf
            floor = max(floor, min(hold.lapses - now, sooner))
            needs = _with_share(needs, hold, show_rate)
            wait = max(floor, bucket_wait(buckets, needs))
        return wait

    @property
    def _show_rate(self) -> float:
        """The share of kept turns claimed by their callers, recently."""
        return (sum(self._shows) + 1) / (len(self._shows) + 2)

    def _leaves(
        self,
        hold: _Hold,
        buckets: list[Projection],
        cautious: list[Projection],
        taken: list[float],
        behind: list[float],
        *,
        start: float,
        now: float,
    ) -> float:
        """Seconds of refill to spare (negative: missing) in what is kept for ``hold`` if ``taken`` is taken
        from the buckets at ``start`` (projected from now) before the hold's caller comes back, and the turns
        due before it take ``behind`` (as far as their callers come back). Its least over the buckets.

        The dispatcher, deciding at ``start``, counts cautiously on what comes back from then to the turn's
        time (the time it was told was cautious): the buckets are projected as expected up to ``start``, and
        as ``cautious`` from then on."""
        at = max(hold.due, start)
        spare = math.inf
        for index, bucket in enumerate(buckets):
            careful = cautious[index]
            later = careful.supplied(at - now) - careful.supplied(start - now)
            projected = min(bucket.spec.capacity, bucket.supplied(start - now) + later)
            missing = taken[index] + behind[index] + hold.needs[index]
            spare = min(spare, (projected - missing) / bucket.spec.rate)
        return spare

    async def _hold_delay(self, ticket: Ticket, now: float) -> float:
        """Seconds before a newer call may start without taking tokens kept for a refused call's turn: until
        the buckets hold enough for both, or the turn lapses; 0 when none would miss what is kept for it."""
        buckets = await self._projections(give_back=False)
        taken = self._taken(ticket.input_tokens, ticket.output_tokens)
        show_rate = self._show_rate
        delay = 0.0
        behind: list[float] = [0.0, 0.0, 0.0]
        for hold in sorted(self._holds.values(), key=lambda hold: hold.due):
            if hold.made > ticket.queued_at:
                continue  # kept after this call was queued: predicted behind it
            spare = self._leaves(hold, buckets, buckets, taken, behind, start=now, now=now)
            if spare < 0:
                # Waiting helps once the turn is due (the buckets refill for both), or when it lapses.
                refilled = max(0.0, hold.due - now) - spare
                delay = max(delay, min(refilled, hold.lapses - now))
            behind = _with_share(behind, hold, show_rate)
        return delay

    def _claim_margin(self, wait: float, now: float) -> float:
        """Seconds a queued call may lose if one more kept turn due before its start is claimed than the
        prediction counted (a turn counts at the rate callers come back, but each is claimed whole or not at
        all): a call queued without this margin, its wait just inside its deadline, would be refused after
        waiting rather than at once whenever one more caller than expected comes back."""
        lane = self.lane
        rates = (lane.requests.rate, lane.input_tokens.rate, lane.output_tokens.rate)
        unexpected = 1.0 - self._show_rate
        margin = 0.0
        for hold in self._holds.values():
            if hold.due <= now + wait:
                margin = max(margin, *(unexpected * t / r for t, r in zip(hold.takes, rates, strict=True)))
        return margin

    def _needed(self, input_tokens: float, output_tokens: float) -> list[float]:
        """What the buckets (requests, input, output) must hold for such a call to start: its demands with
        the lane's reserve."""
        demands = self.lane.demands(input_tokens, output_tokens)
        return [spec.reserve(amount, self._headroom_s)[0] for spec, amount in demands]

    def _taken(self, input_tokens: float, output_tokens: float) -> list[float]:
        """What such a call takes from the buckets (requests, input, output) when it starts."""
        demands = self.lane.demands(input_tokens, output_tokens)
        return [spec.reserve(amount, self._headroom_s)[1] for spec, amount in demands]

    async def _projections(
        self, *, give_back: bool, ahead: float = 0.0, ahead_calls: int = 0
    ) -> list[Projection]:
        """The buckets (requests, input, output) from their levels now, with what calls in flight will give
        back to the output bucket as they settle, or owe (see ``projection``), and what ``ahead_calls``
        calls queued before the one predicted, which reserved ``ahead`` more than they are expected to
        produce, will give back over about a call's duration once started.

        With ``give_back`` False (the dispatcher, which must not start a call on tokens not yet back) only
        what calls in flight will owe is counted, cautiously."""
        lane = self.lane
        specs = [lane.requests, lane.input_tokens, lane.output_tokens]
        levels = await self._state.levels(specs)
        settling, spread = self._output_returns(give_back=give_back, ahead=ahead, ahead_calls=ahead_calls)
        return [
            Projection(specs[0], levels[0]),
            Projection(specs[1], levels[1]),
            Projection(specs[2], levels[2], settling, spread),
        ]

    def _output_returns(
        self, *, give_back: bool, ahead: float, ahead_calls: int
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """What comes back to the output bucket by each step from now, and ``CAUTION_Z`` deviations of it
        (see ``_projections``)."""
        replies = self._replies
        if len(replies) < _SETTLING_SAMPLES:
            # Too few replies to judge calls in flight by: each gives back the average surplus.
            if not give_back:
                return (), ()
            tokens = max(0.0, self.in_flight * self._surplus_output + ahead)
            mean, _ = returns_by_step([], replies, spread_tokens=tokens, spread_s=self._call_seconds)
            return tuple(mean), ()
        now = self._clock()
        in_flight = [
            InFlight(
                now - ticket.started_at,
                ticket.output_tokens,
                math.inf if ticket.max_tokens is None else ticket.max_tokens,
            )
            for ticket in self._running
        ]
        if not give_back:
            # As cautious as the time a refused caller is told: otherwise newer calls would take the margin
            # that time was given, and the caller would come back to a turn not ready.
            mean, variance = returns_by_step(in_flight, replies)
            lowest = (m - CAUTION_Z * math.sqrt(v) for m, v in zip(mean, variance, strict=True))
            return tuple(min(0.0, settled) for settled in lowest), ()
        outputs = [reply.output_tokens for reply in replies]
        mean, variance = returns_by_step(
            in_flight,
            replies,
            spread_tokens=ahead,
            spread_variance=ahead_calls * statistics.pvariance(outputs),
            spread_s=self._call_seconds,
        )
        return tuple(mean), tuple(CAUTION_Z * math.sqrt(v) for v in variance)

    def _refusal(self, ticket: Ticket, prediction: _Prediction) -> RateLimitError:
        """The refusal of a call predicted to start as ``prediction`` says if it waited, told to come back
        ``prediction.back`` from now (sooner when its turn is kept for it)."""
        wait, back = prediction.wait, prediction.back
        if not self._reply_start[ticket.streamed].samples and ticket.reply_start > 0:
            reply = (
                " No reply from this upstream has been timed yet, so a call that must wait is promised a"
                f" start only if its deadline leaves {ticket.reply_start:.0f} s for its reply."
            )
        elif ticket.reply_start > 0:
            reply = f" Replies from this upstream currently take up to {ticket.reply_start:.1f} s to begin."
        else:
            reply = ""
        kept = f" Its turn is kept for it if it comes back in {back:.1f} s." if back < wait else ""
        longer = (
            f" (up to {prediction.longest:.1f} s if the replies ahead run long)"
            if prediction.longest > wait + 0.05
            else ""
        )
        return RateLimitError(
            f"claudegate: this call cannot start before its deadline: it would be number {ticket.position} "
            f"in the queue for {self.lane.lane}, with a predicted wait of {wait:.1f} s{longer}.{reply}{kept} "
            "Retry after that, or allow a later deadline (x-claudegate-deadline-ms).",
            retry_after=max(back, 0.001),
        )

    # -- dispatch -----------------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            if self._queue_changed:
                await self._share_queued()
            ticket = self._next()
            if ticket is None:
                return
            now = self._clock()
            assert ticket.future is not None
            if now + ticket.reply_start > ticket.deadline:
                self._remove(ticket)
                fresh = await self._predict_fresh(now)
                if not ticket.future.done():
                    ticket.future.set_exception(self._refusal(ticket, fresh._replace(back=fresh.longest)))
                continue
            delay = self._paused_until - now
            if delay <= 0 and self.in_flight >= self._max_concurrency:
                delay = math.inf  # until a call finishes
            if delay <= 0 and self._holds and ticket not in self._returning:
                delay = await self._hold_delay(ticket, now)
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
                    self._remove(ticket)
                    self._count_fair_share(ticket)
                    self._start(ticket)
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
        if self._waiting or self._returning or self.in_flight >= self._max_concurrency:
            return False
        if self._paused_until > now or now + self.reply_start(ticket.streamed) > ticket.deadline:
            return False  # the full path refuses it, with a prediction
        if self._holds and await self._hold_delay(ticket, now) > 0:
            return False  # it would take tokens kept for a refused call's turn
        demands = self.lane.demands(ticket.input_tokens, ticket.output_tokens)
        if await self._state.try_take(demands, self._headroom_s) != 0:
            return False
        ticket.position = 1
        self._count_fair_share(ticket)
        ticket.started_at = now
        self._running.add(ticket)
        return True

    def _count_fair_share(self, ticket: Ticket) -> None:
        """A call's tokens are taken: charge its organisation's and user's fair shares."""
        self._org_served[ticket.org] = self._org_served.get(ticket.org, 0.0) + ticket.cost / ticket.org_weight
        key = (ticket.org, ticket.user)
        self._user_served[key] = self._user_served.get(key, 0.0) + ticket.cost / ticket.user_weight
        surplus = ticket.output_tokens - ticket.expected_output
        self._surplus_output = (1 - _SMOOTHING) * self._surplus_output + _SMOOTHING * surplus

    def _start(self, ticket: Ticket) -> None:
        """Give a waiting call its turn: it takes a slot (its tokens are taken)."""
        assert ticket.future is not None
        if ticket.future.done():  # the caller went away at this very moment
            return
        ticket.started_at = self._clock()
        self._running.add(ticket)
        ticket.future.set_result(None)

    async def _predict_fresh(self, now: float) -> _Prediction:
        """What a call joining the back of the queue now would be told."""
        probe = Ticket(org="\uffff", user="", input_tokens=0, output_tokens=0, deadline=math.inf)
        self._enqueue(probe)
        try:
            return await self._predict(probe, now)
        finally:
            self._remove(probe)


def _with_share(amounts: list[float], hold: _Hold, show_rate: float) -> list[float]:
    """``amounts`` (per bucket) plus what a kept turn takes, as far as its caller is likely to come back."""
    return [amount + show_rate * take for amount, take in zip(amounts, hold.takes, strict=True)]


def _slow_reply(ticket: Ticket) -> float:
    """How long the call's reply may take to begin at most, before the lane has timed any."""
    if ticket.streamed:
        return _UNTIMED_FIRST_BYTE_S
    if ticket.max_tokens is None:
        return _UNTIMED_JSON_REPLY_S
    return _UNTIMED_FIRST_BYTE_S + ticket.max_tokens / _UNTIMED_TOKENS_PER_S


def _told(wait: float) -> float:
    """The whole second a refused call is told to come back at, for a predicted start ``wait`` away."""
    return max(1.0, float(math.ceil(wait)))
