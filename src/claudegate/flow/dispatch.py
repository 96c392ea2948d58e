"""The dispatching side of a lane's admission queue: the lane's waiting calls and kept turns, and the task
that starts them in order as the buckets and the concurrency bound allow.

The next call is a kept turn once as many calls have left the queue as were ahead of it when its call was
refused (its barrier), else the head of the fair order. The dispatcher takes the call's tokens when the
buckets hold them, and otherwise waits on the loop's clock until they will (``Wakeup``), or until something
changes. A waiting call that can no longer start in time is refused at its deadline, wherever it is, and
keeps its turn. ``AdmissionQueue`` (``admission``) is the callers' side.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from typing import NoReturn

from claudegate.errors import RateLimitError
from claudegate.flow.fair import FairQueue, Load
from claudegate.flow.forecast import LaneHistory
from claudegate.flow.kept import KeptTurn, KeptTurns
from claudegate.flow.limits import LaneLimits
from claudegate.flow.predict import READY_LEAD_S, Predictor
from claudegate.flow.shared_turns import SharedTurns
from claudegate.flow.state import BucketSpec, FlowState
from claudegate.flow.ticket import Prediction, Ticket
from claudegate.flow.wakeup import Wakeup

__all__ = ["LaneDispatcher"]

_LEAST_WAIT_S = 1e-6
# A dispatcher that has just started a call lets those of other processes waiting for the same tokens take
# the next ones first (this much later), so that processes with calls queued take turns.
_COURTESY_S = 0.001


class LaneDispatcher:
    """A lane's waiting calls and the task that starts them (see the module)."""

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
        self._wakeup = Wakeup()
        self._chores: set[asyncio.Task[None]] = set()  # give-backs of lapsed turns under way
        self._predictor = Predictor(
            lane,
            state,
            fair=self._fair,
            kept=self._kept,
            history=self._history,
            running=self._running,
            max_concurrency=max_concurrency,
            headroom_s=headroom_s,
        )
        self._queue_changed = False  # since the other gateway processes were told what waits here
        self._shared = SharedTurns.for_lane(state, lane)  # kept turns told to those processes; None alone

    @property
    def in_flight(self) -> int:
        """Calls started here that have not finished (a kept turn holding a slot for its caller counts)."""
        return len(self._running)

    def _started(self, ticket: Ticket, now: float) -> None:
        ticket.started_at = now
        self._running.add(ticket)
        self._history.started(ticket)

    # -- kept turns ---------------------------------------------------------------------------------------

    def _refuse(
        self, ticket: Ticket, prediction: Prediction, *, barrier: int, now: float, stated: Prediction
    ) -> NoReturn:
        """Refuse a call that cannot start in time, keeping its turn for it if it can be known again: it is
        told to come back when its turn will be ready (``prediction.back``, rounded up to a whole second),
        and how long it would have waited in the queue (``stated``)."""
        place = ticket.place() if ticket.place is not None else None
        if place is None or self._kept.find(place) is not None:  # an identical call's kept turn is enough
            raise self._predictor.refusal(
                ticket, prediction, back=prediction.longest, kept=False, stated=stated
            )
        turn = self._kept.keep(ticket, place, barrier=barrier)
        self._keep_for(turn, prediction, now)
        self._ensure_dispatcher()
        self._wake()
        raise self._predictor.refusal(ticket, prediction, back=turn.due - now, kept=True, stated=stated)

    def _keep_for(self, turn: KeptTurn, prediction: Prediction, now: float) -> None:
        """Tell the turn's caller to come back when it is ready (``prediction.back``), and give the turn up
        soon after that (``_lapse``)."""
        turn.tell(prediction.back, now, self._lapse)
        self._queue_changed = True
        if self._shared is not None:
            self._shared.publish(turn)

    def _lapse(self, turn: KeptTurn) -> None:
        """A turn's caller did not come back in time: the turn, and what it took, are given up."""
        if turn.caller is None and self._kept.find(turn.place) is turn:
            if self._shared is not None and self._shared.lapse(self, turn):
                return  # asks first whether another process claimed it
            self._kept.showed(claimed=False)
            self._forget(turn)
            if turn.ready:
                self._running.discard(turn.ticket)
                self._give_back(turn)

    def _forget(self, turn: KeptTurn) -> None:
        if self._shared is not None:
            self._shared.withdraw(turn)
        if self._kept.drop(turn):
            self._departed()
        self._queue_changed = True
        self._wake()

    def _give_back(self, turn: KeptTurn) -> None:
        """Return to the buckets what a turn took for a caller who did not use it."""
        if turn.taken is None:
            return
        self._return(turn.taken)
        turn.taken = (0.0, 0.0, 0.0)

    def _return(self, taken: tuple[float, float, float]) -> None:
        """Give back tokens (requests, input, output) taken for a call that will not reach the upstream."""
        specs = (self.lane.requests, self.lane.input_tokens, self.lane.output_tokens)
        chore = asyncio.get_running_loop().create_task(self._return_tokens(specs, taken))
        self._chores.add(chore)
        chore.add_done_callback(self._chores.discard)

    async def _return_tokens(self, specs: tuple[BucketSpec, ...], taken: tuple[float, ...]) -> None:
        for spec, amount in zip(specs, taken, strict=True):
            if amount:
                await self._state.charge(spec, -amount)
        self._wake()

    # These two hand back the predictor's coroutine rather than awaiting it in one of their own: they run on
    # every admit, and a coroutine less is a little less CPU.

    def _predict(
        self, ticket: Ticket, ahead: Load, now: float, *, told: bool = False
    ) -> Coroutine[None, None, Prediction]:
        return self._predictor.predict(ticket, ahead, now, paused_until=self._paused_until, told=told)

    def _share_queued(self, joining: Ticket | None = None) -> Coroutine[None, None, None]:
        """Tell the other gateway processes what waits here (see ``Predictor.share_queued``)."""
        self._queue_changed = joining is not None  # told with a call that may not join after all
        return self._predictor.share_queued(joining)

    # -- dispatch -----------------------------------------------------------------------------------------

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    def _wake(self) -> None:
        """Something changed (a call ended, left, or tokens came back): the dispatcher looks again."""
        self._wakeup.wake()

    def _next(self, now: float) -> tuple[Ticket, KeptTurn | None] | None:
        """The call to start next: a kept turn whose caller is back, once its barrier is reached or its time
        has come; else a kept turn whose time has come; else a kept turn once its barrier is reached; else
        the fair queue's head."""
        for kept in self._kept.callers_back:
            if kept.barrier <= self._departures or kept.due <= now + READY_LEAD_S:
                return kept.ticket, kept
        turn = self._kept.head()
        queued = self._fair.peek()
        due = self._kept.due_by(now + READY_LEAD_S) if queued is not None else None
        if due is not None:
            # Its caller was told it would be ready now: it takes its tokens before the queued calls still
            # ahead of its place (refused callers who stayed away rarely leave those many in the queue).
            # With none queued, nothing would take them first: its caller takes them when back.
            return due.ticket, due
        if turn is not None and (queued is None or turn.barrier <= self._departures):
            return turn.ticket, turn
        if queued is None:
            return None
        return queued, None

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        took = False  # this dispatcher started a call since it last waited
        while True:
            self._wakeup.clear()
            if self._queue_changed:
                await self._share_queued()
            chosen = self._next(loop.time())
            if chosen is None:
                return
            ticket, turn = chosen
            now = loop.time()
            look_again = math.inf
            if turn is not None and turn.caller is None and now < turn.due - READY_LEAD_S:
                # Its caller is not back and not due yet: it takes its tokens only shortly before its time,
                # and until then the next queued call may go first if it leaves the turn what it needs then
                # (a caller who does not come back then costs others little).
                look_again = turn.due - READY_LEAD_S
                if now < self._kept.next_due() - READY_LEAD_S < look_again:
                    look_again = self._kept.next_due() - READY_LEAD_S  # an earlier turn's time
                queued = self._fair.peek()
                reached = self._kept.reached(self._departures)
                if queued is None or not await self._predictor.leaves_kept_turns(
                    self._taken(queued), reached, now
                ):
                    took = False
                    await self._wakeup.sleep_until(look_again)
                    continue
                ticket, turn = queued, None
            waiting = ticket.future is not None and (turn is None or turn.caller is ticket)
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
            if took and self._predictor.others_queued:
                # Other processes wait for the same tokens: the one that waited longest takes next.
                until += _COURTESY_S
            if waiting:
                until = min(until, ticket.deadline - ticket.reply_start)
            until = min(until, look_again)
            turn_time = self._kept.next_due() - READY_LEAD_S
            if turn_time > now:  # a kept turn whose time comes meanwhile takes its tokens then (``_next``)
                until = min(until, turn_time)
            took = False
            await self._wakeup.sleep_until(until)

    def _dispatched(self, ticket: Ticket, turn: KeptTurn | None, now: float) -> None:
        """The call took its tokens: its caller starts, or its kept turn holds them for its caller."""
        self._departures += 1
        self._queue_changed = True
        if turn is None:
            self._fair.pop(ticket)
        else:
            self._fair.charge(ticket)
            if turn.caller is None:
                self._kept.dispatched(turn, self._taken(ticket))
                self._started(ticket, now)
                if self._shared is not None:
                    self._shared.took(self, turn)
                return
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
                barrier = self._departures + self._predictor.ahead_of_new(ticket, self._departures)[0].calls
                turn = self._kept.keep(ticket, place, barrier=barrier)
        if turn is None:
            probe = Ticket(org="\uffff", user="", input_tokens=0, output_tokens=0, deadline=math.inf)
            fresh = await self._predict(probe, self._predictor.ahead_of_new(probe, self._departures)[0], now)
            refusal = self._predictor.refusal(ticket, fresh, back=fresh.longest, kept=False)
        else:
            self._kept.unclaim(turn)
            prediction = await self._predict(
                ticket, self._predictor.ahead_of_kept(turn, self._departures, now), now, told=True
            )
            self._keep_for(turn, prediction, now)
            refusal = self._predictor.refusal(ticket, prediction, back=turn.due - now, kept=True)
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
