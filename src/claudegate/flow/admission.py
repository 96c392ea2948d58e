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
arrives later. Shortly before its time the turn takes the call's tokens and a slot and holds them for the
caller, who starts at once when it comes back; until then queued calls may go first if they leave it what it
needs, and a turn whose caller is not back shortly after its time lapses and gives back what it took. Later
calls count the kept turns ahead of them at the rate at which callers have come back for their turns; once
most callers are seen to stay away, a new call goes after the first few turns by their times (those due
before it would start, or that it would leave short) and ahead of the rest, if it leaves those what they
need (``Predictor.between_turns``).

Gateway processes that share the buckets (through Redis) tell each other how many calls they have queued and
what those will take (``FlowState.share_demand``): each process's dispatcher takes for its head call when
the buckets allow, so the processes with calls waiting take turns, and a prediction counts as many of each
other process's calls ahead as of its own (``_others_ahead``). Fair order is per process; kept turns are
shared with the other processes (``shared_turns``): a caller may come back to any of them.

Every time is the event loop's (``loop.time()``), and every wait is a future woken by ``loop.call_at`` or by
a change in the queue, so a test moves the loop's clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from functools import partial

from claudegate.errors import RateLimitError
from claudegate.flow.dispatch import LaneDispatcher
from claudegate.flow.kept import KeptTurn
from claudegate.flow.reply_start import ReplyStart, slow_reply
from claudegate.flow.ticket import Prediction, Ticket

__all__ = ["UPSTREAM_LAG_S", "AdmissionQueue", "ReplyStart", "Ticket"]

logger = logging.getLogger(__name__)

UPSTREAM_LAG_S = 0.5


class AdmissionQueue(LaneDispatcher):
    """The waiting room of one lane. ``await admit(ticket)`` returns when the call may start; call
    ``finished(...)`` when it ends so its concurrency slot is freed."""

    # -- the caller's side --------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Calls waiting for their turn."""
        return len(self._fair) + self._kept.claimed_pending

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
                self._kept.showed(claimed=now >= turn.early)
                if now >= turn.early:
                    await self._claim(turn, ticket, now, leave)
                    return
                # Back well before its turn: it takes no one's turn, and queues behind those before it.
                self._forget(turn)
        if self._nobody_waits() and await self._start_at_once(ticket, now):
            return
        if self._shared is not None:
            adopted = await self._shared.adopt(self, ticket, now)  # a turn another process kept for it
            if adopted is not None:
                await self._claim(adopted, ticket, now, leave)
                return
            async with self._shared.joining:  # one prediction at a time: each counts the turns kept before
                await self._join(ticket, asyncio.get_running_loop().time())
        else:
            await self._join(ticket, now)
        future = self._waiting(ticket, leave)
        try:
            await future
        except asyncio.CancelledError:
            self._cancelled(ticket, future, self._leave_queue)
            raise

    async def _join(self, ticket: Ticket, now: float) -> None:
        """Predict the call's start and queue it, or refuse it at once if that is past its deadline. (Its
        own coroutine, so that what the prediction made is freed before the call waits: a queue of
        thousands of calls keeps the garbage collector busy in proportion to what each one holds.)"""
        await self._share_queued(joining=ticket)  # what the others have queued, before predicting
        ahead, queued, turns = self._predictor.ahead_of_new(ticket, self._departures)
        prediction = await self._predict(ticket, ahead, now)
        margin = 0.0
        if turns and prediction.wait > 0:
            # It may go before kept turns whose callers are away if it leaves them what they need.
            sooner = await self._predict(ticket, queued, now)
            taken = self._predictor.taken_with(ticket, queued)
            if await self._predictor.leaves_kept_turns(taken, turns, now, start=now + sooner.longest):
                prediction, ahead = sooner, queued
                ticket.position = queued.calls + 1
            else:
                margin = self._predictor.claim_margin(turns, now + prediction.longest)
                # It goes after the turns whose time comes before its start (they take their tokens first,
                # and mostly give them back when their callers stay away), and before the rest, if sooner.
                between = await self._predictor.between_turns(
                    ticket, queued, turns, now, paused_until=self._paused_until
                )
                if between is not None and between[0].longest + between[2] < prediction.longest + margin:
                    prediction, ahead, margin = between
                else:
                    ticket.position = ahead.calls + 1
        self._promise(ticket, prediction, now)
        if now + prediction.longest + margin + ticket.reply_start > ticket.deadline:
            # It is told when its turn will be ready, cautious about how many callers before it come back,
            # and how long it would have waited in the queue.
            stated = await self._predictor.queue_wait(ticket, queued, now, paused_until=self._paused_until)
            ahead, _, _ = self._predictor.ahead_of_new(ticket, self._departures, cautious=True)
            prediction = await self._predict(ticket, ahead, now, told=True)
            self._refuse(ticket, prediction, barrier=self._departures + ahead.calls, now=now, stated=stated)
        self._fair.enqueue(ticket)
        self._queue_changed = False  # the other processes were told of it just now
        self._heard(ticket, prediction)

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

    def _nobody_waits(self) -> bool:
        return not self._fair.load.calls and self._kept.head() is None

    async def _start_at_once(self, ticket: Ticket, now: float) -> bool:
        """The common case, without queueing (``_nobody_waits``): a slot is free and the buckets have room.

        The full path (predicting the order, a future, the dispatcher) is for calls that must wait; most
        calls of an account that is not saturated should cost one bucket check.
        """
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
        if self._shared is not None:
            self._shared.withdraw(turn)  # no other process may claim it now
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
        self._kept.claim(turn, ticket)
        ahead = self._predictor.ahead_of_kept(turn, self._departures, now)
        prediction = await self._predict(ticket, ahead, now)
        self._promise(ticket, prediction, now)
        if now + prediction.longest + ticket.reply_start > ticket.deadline:
            prediction = await self._predict(ticket, ahead, now, told=True)
            self._kept.unclaim(turn)
            self._keep_for(turn, prediction, now)
            raise self._predictor.refusal(ticket, prediction, back=turn.due - now, kept=True)
        self._heard(ticket, prediction)
        future = self._waiting(ticket, leave, turn)
        try:
            await future
        except asyncio.CancelledError:
            self._cancelled(ticket, future, partial(self._leave_turn, turn))
            raise

    def _leave_turn(self, turn: KeptTurn, left: Ticket) -> None:
        if turn.caller is left:
            self._forget(turn)

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

    def _waiting(
        self, ticket: Ticket, leave: asyncio.Event | None, turn: KeptTurn | None = None
    ) -> asyncio.Future[None]:
        """The future the dispatcher resolves when it starts the ticket (queued, or waiting for its kept
        ``turn``), or fails when it refuses it; cancelled when ``leave`` is set. A call still waiting when it
        could no longer start in time is refused then, wherever it is in the queue. No closures: a waiting
        call holds as few objects as it can (see ``_join``)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        ticket.future = future
        self._ensure_dispatcher()
        if turn is not None or self._fair.peek() is ticket:
            self._wake()  # the dispatcher waits for the head's tokens: a call behind it changes nothing
        expiry = ticket.deadline - ticket.reply_start
        if math.isfinite(expiry):
            future.add_done_callback(partial(_cancel, loop.call_at(expiry, self._expired, ticket, turn)))
        if leave is not None:
            watcher = loop.create_task(leave.wait())
            watcher.add_done_callback(partial(_leave, future, leave))
            future.add_done_callback(partial(_cancel, watcher))
        return future

    def _cancelled(
        self, ticket: Ticket, future: asyncio.Future[None], left: Callable[[Ticket], None]
    ) -> None:
        """The caller waiting on ``future`` went away: ``left`` takes the ticket out if it still waits."""
        if not future.done() or future.cancelled():
            left(ticket)
        elif future.exception() is None:
            # Admitted just as the caller went away: it frees its slot and gives back its tokens.
            self.finished(ticket, 0.0, None)
            self._return(self._taken(ticket))

    def _leave_queue(self, ticket: Ticket) -> None:
        self._fair.remove(ticket)
        self._departed()


def _cancel(handle: asyncio.TimerHandle | asyncio.Task[bool], _: asyncio.Future[None]) -> None:
    handle.cancel()


def _leave(future: asyncio.Future[None], leave: asyncio.Event, _: asyncio.Task[bool]) -> None:
    if leave.is_set():
        future.cancel()
