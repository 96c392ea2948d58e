"""Deadline-aware, fair admission to one lane (an upstream and a model class).

Calls wait here until the lane's buckets (requests, input and output tokens) and its concurrency allow them
to start, in fair order (``fair``: organisations share the lane by weight, users their organisation's part
by theirs, higher priorities first). Because the order and the buckets' refill rates are known, the start of
every waiting call can be predicted from running totals of what waits ahead of it (``FairQueue.ahead``) and
what the calls in flight will give back or owe (``forecast``). A call whose predicted start lies beyond its
deadline is refused at once with that prediction as its ``retry-after``, rather than left to time out.

The upstream's buckets run a little behind the lane's: they start refilling when the first call of a burst
reaches the upstream, a network trip (a new connection's, the slowest) after the lane's did. A call therefore
starts only when the lane's buckets would keep ``headroom_s`` (``UPSTREAM_LAG_S`` in the gateway) of refill
in reserve after it, or a call started the moment the lane had refilled could reach an upstream that has not
quite, and be answered 429. A bucket too small to hold the reserve beside a call (a lane allowed one request
at a time) makes each call wait that long instead.

A refused call keeps its turn (``kept``): its ``retry-after`` is the cautious predicted start of its turn,
rounded up to a whole second, and the turn stays in the order where the call was, ahead of every call that
arrives later. When the turn comes it takes the call's tokens and a slot and holds them for the caller, who
starts at once when it comes back; a turn whose caller is not back shortly after its time lapses and gives
them back. Later calls count the kept turns ahead of them in full.

Gateway processes that share the buckets (through Redis) tell each other how many calls they have queued and
what those will take (``FlowState.share_demand``): each process's dispatcher takes for its head call when
the buckets allow, so the processes with calls waiting take turns, and a prediction counts as many of each
other process's calls ahead as of its own (``_others_ahead``). Fair order and kept turns are per process.

Every time is the event loop's (``loop.time()``), and every wait is a future woken by ``loop.call_at`` or by
a change in the queue, so a test moves the loop's clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Callable
from typing import NoReturn

from claudegate.errors import RateLimitError
from claudegate.flow.fair import FairQueue, Load
from claudegate.flow.forecast import LaneHistory
from claudegate.flow.kept import KeptTurn, KeptTurns
from claudegate.flow.limits import LaneLimits
from claudegate.flow.projection import bucket_ready, bucket_wait
from claudegate.flow.reply_start import ReplyStart, slow_reply
from claudegate.flow.state import BucketSpec, FlowState
from claudegate.flow.ticket import Prediction, Ticket

__all__ = ["UPSTREAM_LAG_S", "AdmissionQueue", "ReplyStart", "Ticket"]

logger = logging.getLogger(__name__)

UPSTREAM_LAG_S = 0.5

# A kept turn lapses this long after the time its caller was told, plus a share of the wait: long enough for
# the network and a busy client, short enough that what is kept for an absent caller soon goes to others.
_KEPT_GRACE_S = 0.5
_KEPT_GRACE_SHARE = 0.05
_EARLY_S = 0.25  # a caller back this much (plus a share of the wait) before its turn is early
_EARLY_SHARE = 0.1
_LEAST_WAIT_S = 1e-6
# A dispatcher that has just started a call lets those of other processes waiting for the same tokens take
# the next ones first (this much later), so that processes with calls queued take turns.
_COURTESY_S = 0.001
# Gateway processes sharing the lane's buckets (through Redis) tell each other what they have queued; a
# process that stops telling (it died) stops counting after this long.
_DEMAND_TTL_S = 10.0


class AdmissionQueue:
    """The waiting room of one lane. ``await admit(ticket)`` returns when the call may start; call
    ``finished(...)`` when it ends so its concurrency slot is freed."""

    def __init__(
        self, lane: LaneLimits, state: FlowState, *, max_concurrency: int, headroom_s: float = 0.0
    ) -> None:
        self.lane = lane
        self._state = state
        self._max_concurrency = max_concurrency
        self._headroom_s = headroom_s
        self._fair = FairQueue()
        self._kept = KeptTurns()
        self._history = LaneHistory()
        self._running: set[Ticket] = set()  # calls started here that have not finished, and ready turns
        self._departures = 0  # calls and kept turns that have left the queue: kept turns' barriers count them
        self._paused_until = -math.inf
        self._dispatcher: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._woken = False
        self._chores: set[asyncio.Task[None]] = set()  # give-backs of lapsed turns under way
        # What each other gateway process sharing the lane's buckets has queued (calls, then what they will
        # take: requests, input, output), as last heard, and whether this queue changed since it told them.
        self._member = secrets.token_hex(8)
        self._others_queued: list[list[float]] = []
        self._queue_changed = False

    # -- the caller's side --------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Calls waiting for their turn."""
        return len(self._fair) + self._kept.claimed_pending

    @property
    def in_flight(self) -> int:
        """Calls started here that have not finished (a kept turn holding a slot for its caller counts)."""
        return len(self._running)

    @property
    def holds(self) -> int:
        """Turns kept for refused calls whose callers have not come back yet."""
        return self._kept.unclaimed

    async def admit(self, ticket: Ticket, leave: asyncio.Event | None = None) -> None:
        """Wait for the ticket's turn; raise RateLimitError (429) at once if it cannot start in time.

        ``leave`` is set when the caller goes away while waiting: the ticket then leaves the queue and
        ``asyncio.CancelledError`` is raised (the task itself was not cancelled; the caller tells apart).
        """
        now = asyncio.get_running_loop().time()
        if self._kept and ticket.place is not None:
            turn = self._kept.find(ticket.place())
            if turn is not None and turn.caller is None:
                if now >= turn.early:
                    await self._claim(turn, ticket, now, leave)
                    return
                # Back well before its turn: it takes no one's turn, and queues behind those before it.
                self._forget(turn)
        if await self._start_at_once(ticket, now):
            return
        await self._share_queued(joining=ticket)  # what the others have queued, before predicting
        ahead = self._ahead_of_new(ticket)
        prediction = await self._predict(ticket, ahead, now)
        self._promise(ticket, prediction, now)
        if now + prediction.longest + ticket.reply_start > ticket.deadline:
            prediction = await self._predict(ticket, ahead, now, told=True)
            self._refuse(ticket, prediction, barrier=self._departures + ahead.calls, now=now)
        self._fair.enqueue(ticket)
        self._queue_changed = False  # the other processes were told of it just now
        self._heard(ticket, prediction)
        await self._wait(ticket, leave, self._leave_queue)

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
        now = asyncio.get_running_loop().time()
        self._history.ended(ticket, seconds, first_byte_seconds, output_tokens, now)
        self._wake()

    def reply_start(self, streamed: bool) -> float:
        """A high estimate of the time from dispatch to the first byte of a reply."""
        return self._history.reply_starts[streamed].bound(asyncio.get_running_loop().time())

    def pause(self, seconds: float) -> None:
        """Dispatch nothing for a while (the upstream said ``retry-after``)."""
        now = asyncio.get_running_loop().time()
        self._paused_until = max(self._paused_until, now + seconds)
        self._wake()

    # -- admission ----------------------------------------------------------------------------------------

    async def _start_at_once(self, ticket: Ticket, now: float) -> bool:
        """The common case, without queueing: nobody waits, a slot is free and the buckets have room.

        The full path (predicting the order, a future, the dispatcher) is for calls that must wait; most
        calls of an account that is not saturated should cost one bucket check.
        """
        if self._fair.load.calls or self._kept.head() is not None:
            return False
        if self.in_flight >= self._max_concurrency or self._paused_until > now:
            return False
        if now + self.reply_start(ticket.streamed) > ticket.deadline:
            return False  # the full path refuses it, with a prediction
        if await self._state.try_take(self._demands(ticket), self._headroom_s) != 0:
            return False
        ticket.position = 1
        self._fair.charge(ticket)
        self._started(ticket, now)
        return True

    async def _claim(self, turn: KeptTurn, ticket: Ticket, now: float, leave: asyncio.Event | None) -> None:
        """A refused call is back at its kept turn: it starts at once if the turn was dispatched, or waits
        for it at its place in the order."""
        if turn.ready:
            self._forget(turn)
            self._running.discard(turn.ticket)
            # It was admitted on what the turn took.
            ticket.input_tokens, ticket.output_tokens = turn.ticket.input_tokens, turn.ticket.output_tokens
            ticket.reply_start = self.reply_start(ticket.streamed)
            if now + ticket.reply_start > ticket.deadline:
                self._give_back(turn)
                raise RateLimitError(
                    f"claudegate: replies from {self.lane.lane} currently take up to "
                    f"{ticket.reply_start:.1f} s to begin, beyond this call's deadline. Allow a later "
                    "deadline (x-claudegate-deadline-ms).",
                    retry_after=1.0,
                )
            ticket.position = 1
            ticket.started_at = now  # what the turn took was counted when it was dispatched
            self._running.add(ticket)
            return
        turn.ticket = turn.caller = ticket
        ahead = self._ahead_of_kept(turn)
        prediction = await self._predict(ticket, ahead, now)
        self._promise(ticket, prediction, now)
        if now + prediction.longest + ticket.reply_start > ticket.deadline:
            prediction = await self._predict(ticket, ahead, now, told=True)
            turn.caller = None
            self._keep_for(turn, prediction, now)
            raise self._refusal(ticket, prediction, back=turn.due - now, kept=True)
        self._heard(ticket, prediction)

        def leave_turn(left: Ticket) -> None:
            if turn.caller is left:
                self._forget(turn)

        await self._wait(ticket, leave, leave_turn, turn)

    def _promise(self, ticket: Ticket, prediction: Prediction, now: float) -> None:
        """Fix the reply-start estimate the call is admitted on: later replies may move the lane's estimate,
        but a call told it would start in time keeps that promise rather than being refused late."""
        estimate = self._history.reply_starts[ticket.streamed]
        ticket.reply_start = (
            estimate.bound(now) if prediction.wait <= 0 else estimate.promise(now, slow_reply(ticket))
        )
        ticket.predicted_wait = prediction.wait

    @staticmethod
    def _heard(ticket: Ticket, prediction: Prediction) -> None:
        if ticket.on_queued is None or prediction.wait <= 0:
            return
        try:
            ticket.on_queued(ticket.position, prediction.wait)
        except Exception:
            # The caller's callback runs inside the queue: an exception escaping here would leave the ticket
            # queued for nobody. Log it; the call keeps its place.
            logger.exception("an on_queued callback raised; the call keeps its place")

    async def _wait(
        self,
        ticket: Ticket,
        leave: asyncio.Event | None,
        left: Callable[[Ticket], None],
        turn: KeptTurn | None = None,
    ) -> None:
        """Wait for the dispatcher to start the ticket (queued, or waiting for its kept ``turn``); ``left``
        takes it out if its caller goes. A call still waiting when it could no longer start in time is
        refused then, wherever it is in the queue."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        ticket.future = future
        self._ensure_dispatcher()
        if turn is not None or self._fair.peek() is ticket:
            self._wake()  # the dispatcher waits for the head's tokens: a call behind it changes nothing
        expiry = ticket.deadline - ticket.reply_start
        if math.isfinite(expiry):
            timer = loop.call_at(expiry, self._expired, ticket, turn)
            future.add_done_callback(lambda _: timer.cancel())
        watcher: asyncio.Task[bool] | None = None
        if leave is not None:
            watcher = loop.create_task(leave.wait())
            watcher.add_done_callback(lambda _: future.cancel() if leave.is_set() else None)
        try:
            await future
        except asyncio.CancelledError:
            if not future.done() or future.cancelled():
                left(ticket)
            elif future.exception() is None:
                self.finished(ticket, 0.0, None)  # admitted just as the caller went away: free the slot
            raise
        finally:
            if watcher is not None:
                watcher.cancel()

    def _leave_queue(self, ticket: Ticket) -> None:
        self._fair.remove(ticket)
        self._departed()

    def _started(self, ticket: Ticket, now: float) -> None:
        ticket.started_at = now
        self._running.add(ticket)
        self._history.started(ticket)

    # -- kept turns ---------------------------------------------------------------------------------------

    def _refuse(self, ticket: Ticket, prediction: Prediction, *, barrier: int, now: float) -> NoReturn:
        """Refuse a call that cannot start in time, keeping its turn for it if it can be known again: it is
        told to come back when its turn will be ready (``prediction.back``, rounded up to a whole second)."""
        place = ticket.place() if ticket.place is not None else None
        if place is None or self._kept.find(place) is not None:  # an identical call's kept turn is enough
            raise self._refusal(ticket, prediction, back=prediction.longest, kept=False)
        back = _told(prediction.back)
        turn = self._kept.keep(ticket, place, barrier=barrier)
        self._keep_for(turn, prediction, now)
        self._ensure_dispatcher()
        self._wake()
        raise self._refusal(ticket, prediction, back=back, kept=True)

    def _keep_for(self, turn: KeptTurn, prediction: Prediction, now: float) -> None:
        """Tell the turn's caller to come back when it is ready, and give it up soon after that.

        The turn is kept at a whole second: callers that read retry-after (whole seconds, rounded up) and
        those that read retry-after-ms then come back together."""
        back = _told(prediction.back)
        turn.due = now + back
        turn.early = turn.due - _EARLY_S - _EARLY_SHARE * back
        turn.lapses = turn.due + _KEPT_GRACE_S + _KEPT_GRACE_SHARE * back
        if turn.timer is not None:
            turn.timer.cancel()
        turn.timer = asyncio.get_running_loop().call_at(turn.lapses, self._lapse, turn)
        self._queue_changed = True

    def _lapse(self, turn: KeptTurn) -> None:
        """A turn's caller did not come back in time: the turn, and what it took, are given up."""
        if turn.caller is None and self._kept.find(turn.place) is turn:
            self._forget(turn)
            if turn.ready:
                self._running.discard(turn.ticket)
                self._give_back(turn)

    def _forget(self, turn: KeptTurn) -> None:
        if self._kept.drop(turn):
            self._departed()
        self._queue_changed = True
        self._wake()

    def _give_back(self, turn: KeptTurn) -> None:
        """Return to the buckets what a turn took for a caller who did not use it."""
        if turn.taken is None:
            return
        specs = (self.lane.requests, self.lane.input_tokens, self.lane.output_tokens)
        chore = asyncio.get_running_loop().create_task(self._return_tokens(specs, turn.taken))
        self._chores.add(chore)
        chore.add_done_callback(self._chores.discard)
        turn.taken = (0.0, 0.0, 0.0)

    async def _return_tokens(self, specs: tuple[BucketSpec, ...], taken: tuple[float, ...]) -> None:
        for spec, amount in zip(specs, taken, strict=True):
            if amount:
                await self._state.charge(spec, -amount)
        self._wake()

    # -- predictions --------------------------------------------------------------------------------------

    def _ahead_of_new(self, ticket: Ticket) -> Load:
        """What goes before a call joining the queue now: the calls before it in fair order and the kept
        turns that will be dispatched before it (all of them were refused before it came)."""
        ahead = self._fair.ahead(ticket)
        for turn in self._kept.pending():
            if turn.barrier - self._departures > ahead.calls:
                break  # the rest are dispatched after it
            ahead.add(Load.of(turn.ticket))
        ticket.position = ahead.calls + 1
        return ahead

    def _ahead_of_kept(self, kept: KeptTurn) -> Load:
        """What goes before a kept turn not yet dispatched: the turns before it, and as many queued calls as
        must leave the queue before its barrier is reached."""
        ahead = Load()
        for turn in self._kept.pending():
            if turn is kept:
                break
            ahead.add(Load.of(turn.ticket))
        queued = kept.barrier - self._departures - ahead.calls
        ahead.add(self._fair.load.first(queued))
        kept.ticket.position = ahead.calls + 1
        return ahead

    async def _predict(self, ticket: Ticket, ahead: Load, now: float, *, told: bool = False) -> Prediction:
        """When ``ticket`` is predicted to start with ``ahead`` before it: as expected, if the replies ahead
        run long, and (``told``; else NaN) the moment its turn would be ready for good (what a refused
        caller is told).

        The calls ahead take their reservations and give back what they are not expected to use as they
        settle (see ``forecast``); the call's own needs are counted in full (with the lane's reserve), since
        it starts only once they are there."""
        lane = self.lane
        specs = (lane.requests, lane.input_tokens, lane.output_tokens)
        calls, headroom = ahead.calls, self._headroom_s
        needs = [
            self._taken_by(lane.requests, float(calls), calls) + lane.requests.reserve(1.0, headroom)[0],
            self._taken_by(lane.input_tokens, ahead.input, calls)
            + lane.input_tokens.reserve(ticket.input_tokens, headroom)[0],
            self._taken_by(lane.output_tokens, ahead.output, calls)
            + lane.output_tokens.reserve(ticket.output_tokens, headroom)[0],
        ]
        # Calls queued by other gateway processes sharing the buckets take from them too.
        if self._others_queued:
            others = self._others_ahead(ticket.position)
            needs = [need + other for need, other in zip(needs, others, strict=True)]
        levels = await self._state.levels(specs)
        in_flight = len(self._running)
        buckets = self._history.projections(
            lane, levels, self._running, in_flight, now, ahead=ahead.surplus, ahead_calls=calls
        )
        wait = bucket_wait(buckets, needs)
        # A caller told to come back finds its turn ready then unless the calls before it produce much more
        # than expected: it is told a cautious time.
        output = buckets[2]
        cautious = [buckets[0], buckets[1], output.cautious()] if output.spread else buckets
        longest = bucket_wait(cautious, needs) if output.spread else wait
        back = bucket_ready(cautious, needs) if told else math.nan
        free_slots = self._max_concurrency - in_flight
        slot_wait = 0.0
        if ticket.position > free_slots:
            rounds = math.ceil((ticket.position - free_slots) / self._max_concurrency)
            slot_wait = rounds * self._history.call_seconds
        least = max(slot_wait, self._paused_until - now)
        return Prediction(max(wait, least), max(wait, longest, least), max(back, least))

    def _taken_by(self, spec: BucketSpec, amount: float, calls: int) -> float:
        """What ``calls`` calls taking ``amount`` in all take from a bucket, with the lane's reserve (counted
        at their average)."""
        if calls <= 0:
            return 0.0
        return calls * spec.reserve(amount / calls, self._headroom_s)[1]

    def _refusal(self, ticket: Ticket, prediction: Prediction, *, back: float, kept: bool) -> RateLimitError:
        """The refusal of a call predicted to start as ``prediction`` says if it waited, told to come back
        ``back`` from now."""
        wait = prediction.wait
        if not self._history.reply_starts[ticket.streamed].samples and ticket.reply_start > 0:
            reply = (
                " No reply from this upstream has been timed yet, so a call that must wait is promised a"
                f" start only if its deadline leaves {ticket.reply_start:.0f} s for its reply."
            )
        elif ticket.reply_start > 0:
            reply = f" Replies from this upstream currently take up to {ticket.reply_start:.1f} s to begin."
        else:
            reply = ""
        turn = f" Its turn is kept for it if it comes back in {back:.1f} s." if kept else ""
        longer = (
            f" (up to {prediction.longest:.1f} s if the replies ahead run long)"
            if prediction.longest > wait + 0.05
            else ""
        )
        return RateLimitError(
            f"claudegate: this call cannot start before its deadline: it would be number {ticket.position} "
            f"in the queue for {self.lane.lane}, with a predicted wait of {wait:.1f} s{longer}.{reply}{turn} "
            "Retry after that, or allow a later deadline (x-claudegate-deadline-ms).",
            retry_after=max(back, 0.001),
        )

    # -- sharing with other gateway processes ---------------------------------------------------------------

    async def _share_queued(self, joining: Ticket | None = None) -> None:
        """Tell the other gateway processes sharing the lane's buckets how many calls wait here (with
        ``joining``, about to) and what they will take (requests, input, output), and hear the same of
        theirs (see ``_others_ahead``)."""
        self._queue_changed = joining is not None  # told with a call that may not join after all
        load = Load.of(joining) if joining is not None else Load()
        load.add(self._fair.load)
        for turn in self._kept.pending():
            load.add(Load.of(turn.ticket))
        lane = self.lane
        queued = [
            float(load.calls),
            self._taken_by(lane.requests, float(load.calls), load.calls),
            self._taken_by(lane.input_tokens, load.input, load.calls),
            self._taken_by(lane.output_tokens, load.output, load.calls),
        ]
        others = await self._state.share_demand(lane.lane, self._member, queued, _DEMAND_TTL_S)
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

    # -- dispatch -----------------------------------------------------------------------------------------

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    def _wake(self) -> None:
        """Something changed (a call ended, left, or tokens came back): the dispatcher looks again."""
        self._woken = True
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _sleep_until(self, when: float) -> None:
        """Wait until ``when`` on the loop's clock, or until woken."""
        if self._woken:
            return
        loop = asyncio.get_running_loop()
        wakeup: asyncio.Future[None] = loop.create_future()
        self._wakeup = wakeup
        timer = loop.call_at(when, _resolve, wakeup) if math.isfinite(when) else None
        try:
            await wakeup
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()

    def _next(self) -> tuple[Ticket, KeptTurn | None] | None:
        """The call to start next: a kept turn once its barrier is reached, else the fair queue's head."""
        turn = self._kept.head()
        queued = self._fair.peek()
        if turn is not None and (queued is None or turn.barrier <= self._departures):
            return turn.ticket, turn
        if queued is None:
            return None
        return queued, None

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        took = False  # this dispatcher started a call since it last waited
        while True:
            self._woken = False
            if self._queue_changed:
                await self._share_queued()
            chosen = self._next()
            if chosen is None:
                return
            ticket, turn = chosen
            waiting = ticket.future is not None and (turn is None or turn.caller is ticket)
            now = loop.time()
            if waiting and now + ticket.reply_start > ticket.deadline:
                await self._too_late(ticket, turn, now)
                continue
            delay = self._paused_until - now
            if delay <= 0 and self.in_flight >= self._max_concurrency:
                delay = math.inf  # until a call finishes
            if delay <= 0:
                delay = await self._state.try_take(self._demands(ticket), self._headroom_s)
                if math.isinf(delay):
                    self._too_big(ticket, turn)
                    continue
                if delay == 0:
                    self._dispatched(ticket, turn, now)
                    took = True
                    continue
            # At least a moment: a bucket a rounding error short would otherwise be asked again at once, at
            # the same time, for ever.
            until = now + max(delay, _LEAST_WAIT_S)
            if took and self._others_queued:
                # Other processes wait for the same tokens: the one that waited longest takes next.
                until += _COURTESY_S
            if waiting:
                until = min(until, ticket.deadline - ticket.reply_start)
            took = False
            await self._sleep_until(until)

    def _dispatched(self, ticket: Ticket, turn: KeptTurn | None, now: float) -> None:
        """The call took its tokens: its caller starts, or its kept turn holds them for its caller."""
        self._departures += 1
        self._queue_changed = True
        self._fair.charge(ticket)
        if turn is None:
            self._fair.remove(ticket)
        elif turn.caller is None:
            self._kept.dispatched(turn, self._taken(ticket))
            self._started(ticket, now)
            return
        else:
            self._kept.drop(turn)
        assert ticket.future is not None
        if ticket.future.done():  # the caller went away at this very moment
            return
        self._started(ticket, now)
        ticket.future.set_result(None)

    def _expired(self, ticket: Ticket, turn: KeptTurn | None) -> None:
        if ticket.future is not None and not ticket.future.done():
            loop = asyncio.get_running_loop()
            chore = loop.create_task(self._too_late(ticket, turn, loop.time()))
            self._chores.add(chore)
            chore.add_done_callback(self._chores.discard)

    async def _too_late(self, ticket: Ticket, turn: KeptTurn | None, now: float) -> None:
        """A waiting call can no longer start in time: refuse it. It keeps its turn if it can be known again
        (or has a kept turn already), and is told when that will be ready."""
        future = ticket.future
        assert future is not None
        if future.done() or (turn is not None and turn.caller is not ticket):
            return  # started, refused or gone meanwhile
        if turn is None:
            self._fair.remove(ticket)
            self._departed()
            place = ticket.place() if ticket.place is not None else None
            if place is not None and self._kept.find(place) is None:
                barrier = self._departures + self._ahead_of_new(ticket).calls
                turn = self._kept.keep(ticket, place, barrier=barrier)
        if turn is None:
            probe = Ticket(org="\uffff", user="", input_tokens=0, output_tokens=0, deadline=math.inf)
            fresh = await self._predict(probe, self._ahead_of_new(probe), now)
            refusal = self._refusal(ticket, fresh, back=fresh.longest, kept=False)
        else:
            turn.caller = None
            prediction = await self._predict(ticket, self._ahead_of_kept(turn), now, told=True)
            self._keep_for(turn, prediction, now)
            refusal = self._refusal(ticket, prediction, back=turn.due - now, kept=True)
        if not future.done():
            future.set_exception(refusal)

    def _too_big(self, ticket: Ticket, turn: KeptTurn | None) -> None:
        if turn is None:
            self._fair.remove(ticket)
            self._departed()
        else:
            self._forget(turn)
        refusal = RateLimitError(
            f"claudegate: this call needs more tokens than {self.lane.lane} allows at once", retry_after=60
        )
        if ticket.future is not None and not ticket.future.done():
            ticket.future.set_exception(refusal)

    def _departed(self) -> None:
        self._departures += 1
        self._queue_changed = True
        self._wake()

    def _demands(self, ticket: Ticket) -> list[tuple[BucketSpec, float]]:
        return self.lane.demands(ticket.input_tokens, ticket.output_tokens)

    def _taken(self, ticket: Ticket) -> tuple[float, float, float]:
        """What the call took from the buckets (requests, input, output), with the lane's reserve."""
        taken = [spec.reserve(amount, self._headroom_s)[1] for spec, amount in self._demands(ticket)]
        return (taken[0], taken[1], taken[2])


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _told(wait: float) -> float:
    """The whole second a refused call is told to come back at, for a predicted start ``wait`` away."""
    return max(1.0, float(math.ceil(wait - 1e-9)))
