"""When a waiting call will start: what goes before it, where the buckets will stand, and what a refused
caller is told.

What goes before a call is read from running totals (``FairQueue.ahead``, the kept turns due before it, and
what other gateway processes sharing the buckets have queued), never by replaying the order. The buckets'
levels, their refill, and what calls in flight and ahead give back or owe (``forecast``) then give the
moment the call's needs are there: as expected, if the replies ahead run long (cautious), and when they are
there for good (what a refused caller is told, so that its turn is ready when it comes back).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence

from claudegate.errors import RateLimitError
from claudegate.flow.fair import FairQueue, Load
from claudegate.flow.forecast import LaneHistory
from claudegate.flow.kept import KeptTurn, KeptTurns
from claudegate.flow.limits import LaneLimits
from claudegate.flow.projection import bucket_ready, bucket_wait
from claudegate.flow.state import BucketSpec, FlowState
from claudegate.flow.ticket import Prediction, Ticket

__all__ = ["READY_LEAD_S", "Predictor"]

# A kept turn whose caller is away lets queued calls go first until this long before its time.
READY_LEAD_S = 0.1
# Gateway processes sharing the lane's buckets (through Redis) tell each other what they have queued; a
# process that stops telling (it died) stops counting after this long.
_DEMAND_TTL_S = 10.0
# A new call goes after at most this many kept turns and before the rest (``between_turns``); behind more,
# it is predicted behind them all.
_BETWEEN_TURNS = 16
# A new call goes between kept turns only while fewer than this share of callers come back for their turns:
# then the turns due before it mostly lapse and give back what they took, so what it counts of them is what
# they will keep. When most callers come back, every turn keeps its tokens, and a call slipped in among
# them would start late or delay a caller back at its time.
_BETWEEN_SHOW_RATE = 0.5
# The kept turns (the first by their times) that a refusal's stated wait looks at (``queue_wait``).
_QUEUE_WAIT_TURNS = 16


class Predictor:
    """Predictions for one lane's queue (its fair order, kept turns and history, shared with the queue)."""

    __slots__ = (
        "_fair",
        "_headroom_s",
        "_history",
        "_kept",
        "_max_concurrency",
        "_member",
        "_running",
        "_state",
        "lane",
        "others_queued",
    )

    def __init__(
        self,
        lane: LaneLimits,
        state: FlowState,
        *,
        fair: FairQueue,
        kept: KeptTurns,
        history: LaneHistory,
        running: set[Ticket],
        max_concurrency: int,
        headroom_s: float,
    ) -> None:
        self.lane = lane
        self._state = state
        self._fair = fair
        self._kept = kept
        self._history = history
        self._running = running
        self._max_concurrency = max_concurrency
        self._headroom_s = headroom_s
        # What each other gateway process sharing the lane's buckets has queued (calls, then what they will
        # take: requests, input, output), as last heard.
        self._member = secrets.token_hex(8)
        self.others_queued: list[list[float]] = []

    def ahead_of_new(
        self, ticket: Ticket, departures: int, *, cautious: bool = False
    ) -> tuple[Load, Load, list[KeptTurn]]:
        """What goes before a call joining the queue now: the calls before it in fair order and the kept
        turns that will be dispatched before it (all of them were refused before it came), counted as far as
        their callers are likely to come back (``cautious``: for a refused caller's time, see
        ``KeptTurns.cautious_show_rate``); the fair part alone; and those turns."""
        queued = self._fair.ahead(ticket)
        if self._kept.head() is None:  # the common case, on every admit
            ticket.position = queued.calls + 1
            return queued, queued, []
        ahead = Load()
        ahead.add(queued)
        # A kept turn takes what its call needs as far as callers come back for their turns: one whose
        # caller does not gives it all back soon after its time.
        show_rate = self._kept.cautious_show_rate if cautious else self._kept.show_rate
        turns: list[KeptTurn] = []
        for turn in self._kept.pending():
            if turn.barrier - departures > (ahead.calls if cautious else ahead.expected_calls):
                break  # the rest are dispatched after it (or, expected, after its turn)
            ahead.add_share(Load.of(turn.ticket), 1.0 if turn.caller is not None else show_rate)
            turns.append(turn)
        ticket.position = ahead.calls + 1
        return ahead, queued, turns

    async def between_turns(
        self, ticket: Ticket, queued: Load, turns: Sequence[KeptTurn], now: float, *, paused_until: float
    ) -> tuple[Prediction, Load, float] | None:
        """When ``ticket`` would start going after the first of the kept ``turns`` by their times and before
        the others, leaving each of those what it needs at its time; what goes before it then; and the margin
        it needs beyond that start for one more of the turns it goes after claimed than expected (see
        ``claim_margin``). It goes after a turn whose time comes before it would start (the turn takes its
        tokens first: see ``LaneDispatcher._next``) and after one it cannot leave what it needs; it then
        starts no sooner than that turn's time, or, if its caller is away, than the turn lapses and gives
        back what it took. None if it would go after all of them, or more than ``_BETWEEN_TURNS`` (the plain
        prediction then holds), or unless most callers stay away from their turns (``_BETWEEN_SHOW_RATE``)."""
        show_rate = self._kept.show_rate
        if show_rate >= _BETWEEN_SHOW_RATE:
            return None
        ahead = Load()
        ahead.add(queued)
        floor = now
        later = sorted(turns, key=lambda turn: turn.due)
        early: list[KeptTurn] = []
        while later and len(early) <= _BETWEEN_TURNS:
            prediction = await self.predict(ticket, ahead, now, paused_until=paused_until)
            start = max(now + prediction.longest, floor)
            due = 0
            while due < len(later) and (
                later[due].caller is not None or start > later[due].due - READY_LEAD_S
            ):
                due += 1
            if not due:
                if await self.leaves_kept_turns(self.taken_with(ticket, ahead), later, now, start=start):
                    if not early:
                        return None  # it goes before them all: the plain prediction says so
                    ticket.position = ahead.calls + 1
                    least = floor - now
                    longest = max(prediction.longest, least)
                    # One more of the turns it goes after claimed than expected delays it from where it
                    # would start by the tokens alone; waiting for a turn to lapse is waiting meanwhile.
                    margin = prediction.longest + self.claim_margin(early, start) - longest
                    wait = max(prediction.wait, least)
                    return Prediction(wait, longest, max(prediction.back, least)), ahead, max(0.0, margin)
                due = 1  # it would take what the next turn needs at its time: it goes after that turn
            for turn in later[:due]:
                ahead.add_share(Load.of(turn.ticket), 1.0 if turn.caller is not None else show_rate)
                floor = max(floor, turn.lapses if turn.caller is None else turn.due)
            early += later[:due]
            del later[:due]
        return None

    def claim_margin(self, turns: Sequence[KeptTurn], start: float) -> float:
        """Seconds a call starting at ``start`` may lose if one more of the kept ``turns`` due before then is
        claimed than their callers' rate of coming back expects (each is claimed whole or not at all): a call
        queued without this margin, its wait just inside its deadline, would be refused after waiting rather
        than at once."""
        lane = self.lane
        unexpected = 1.0 - self._kept.show_rate
        margin = 0.0
        for turn in turns:
            if turn.caller is None and turn.due <= start:
                demands = lane.demands(turn.ticket.input_tokens, turn.ticket.output_tokens)
                margin = max(margin, *(unexpected * amount / spec.rate for spec, amount in demands))
        return margin

    def taken_with(self, ticket: Ticket, ahead: Load) -> list[float]:
        """What ``ahead`` and then ``ticket`` take from the buckets (requests, input, output)."""
        lane, calls = self.lane, ahead.calls
        return [
            self.taken_by(lane.requests, ahead.expected_calls + 1, calls + 1),
            self.taken_by(lane.input_tokens, ahead.input, calls)
            + lane.input_tokens.reserve(ticket.input_tokens, self._headroom_s)[1],
            self.taken_by(lane.output_tokens, ahead.output, calls)
            + lane.output_tokens.reserve(ticket.output_tokens, self._headroom_s)[1],
        ]

    async def leaves_kept_turns(
        self, taken: Sequence[float], turns: Sequence[KeptTurn], now: float, *, start: float | None = None
    ) -> bool:
        """Whether taking ``taken`` (requests, input, output) from the buckets by ``start`` (now, if None)
        still leaves each of the kept ``turns`` (by their times) what it needs at its time, counting refill
        and, cautiously, what calls in flight will owe; never when its caller is back and waiting."""
        lane = self.lane
        levels = await self._state.levels((lane.requests, lane.input_tokens, lane.output_tokens))
        buckets = self._history.owed(lane, levels, self._running, now)
        # Each turn needs all it needs at its time; the turns before it count as far as their callers are
        # likely to come back (a turn whose caller is away gives back what it took soon after its time).
        show_rate = self._kept.show_rate
        used = list(taken)
        for turn in sorted(turns, key=lambda kept: kept.due):
            if turn.caller is not None or (start is not None and start > turn.due - READY_LEAD_S):
                return False
            demands = lane.demands(turn.ticket.input_tokens, turn.ticket.output_tokens)
            for index, (spec, amount) in enumerate(demands):
                needed = spec.reserve(amount, self._headroom_s)[0]
                level = buckets[index].supplied(max(0.0, turn.due - now)) - used[index]
                if min(spec.capacity, level) < needed:
                    return False
                used[index] += show_rate * needed
        return True

    def ahead_of_kept(self, kept: KeptTurn, departures: int, now: float) -> Load:
        """What goes before a kept turn not yet dispatched: the turns before it whose callers are back, and
        as many queued calls as must leave the queue before its barrier is reached, unless its time has come
        (then it goes first: see ``LaneDispatcher._next``)."""
        ahead = Load()
        for turn in self._kept.pending():
            if turn is kept:
                break
            if turn.caller is not None:  # turns whose callers are away do not hold up one whose caller is
                ahead.add(Load.of(turn.ticket))  # back
        if kept.due > now + READY_LEAD_S:
            queued = kept.barrier - departures - ahead.calls
            ahead.add(self._fair.load.first(queued))
        kept.ticket.position = ahead.calls + 1
        return ahead

    async def predict(
        self, ticket: Ticket, ahead: Load, now: float, *, paused_until: float, told: bool = False
    ) -> Prediction:
        """When ``ticket`` is predicted to start with ``ahead`` before it: as expected, if the replies ahead
        run long, and (``told``; else NaN) the moment its turn would be ready for good (what a refused
        caller is told).

        The calls ahead take their reservations and give back what they are not expected to use as they
        settle (see ``forecast``); the call's own needs are counted in full (with the lane's reserve), since
        it starts only once they are there."""
        lane = self.lane
        specs = (lane.requests, lane.input_tokens, lane.output_tokens)
        calls, headroom = ahead.calls, self._headroom_s
        expected = ahead.expected_calls  # kept turns count as far as their callers are likely to come back
        needs = [
            self.taken_by(lane.requests, expected, calls) + lane.requests.reserve(1.0, headroom)[0],
            self.taken_by(lane.input_tokens, ahead.input, calls)
            + lane.input_tokens.reserve(ticket.input_tokens, headroom)[0],
            self.taken_by(lane.output_tokens, ahead.output, calls)
            + lane.output_tokens.reserve(ticket.output_tokens, headroom)[0],
        ]
        # Calls queued by other gateway processes sharing the buckets take from them too.
        if self.others_queued:
            others = self._others_ahead(ticket.position)
            needs = [need + other for need, other in zip(needs, others, strict=True)]
        levels = await self._state.levels(specs)
        in_flight = len(self._running)
        buckets = self._history.projections(
            lane, levels, self._running, in_flight, now, ahead=ahead.surplus, ahead_calls=round(expected)
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
        if expected + 1 > free_slots:
            rounds = math.ceil((expected + 1 - free_slots) / self._max_concurrency)
            slot_wait = rounds * self._history.call_seconds
        least = max(slot_wait, paused_until - now)
        return Prediction(max(wait, least), max(wait, longest, least), max(back, least))

    async def queue_wait(
        self, ticket: Ticket, queued: Load, now: float, *, paused_until: float
    ) -> Prediction:
        """When ``ticket`` would start had it joined the queue now behind ``queued`` (the calls before it in
        fair order): what a refusal states. The kept turns are taken by their times: the call goes before a
        turn if it can start before the turn's time and leave it what it needs then; otherwise it waits for
        the turn, which holds its tokens until its time has passed (``KeptTurn.lapses``) and keeps them only
        if its caller comes back (counted at the rate callers do)."""
        show_rate = self._kept.show_rate
        ahead = Load()
        ahead.add(queued)
        floor = now
        prediction = await self.predict(ticket, ahead, now, paused_until=paused_until)
        turns = sorted(self._kept.pending(), key=lambda turn: turn.due)
        for turn in turns[:_QUEUE_WAIT_TURNS]:
            start = max(now + prediction.longest, floor)
            if start <= turn.due - READY_LEAD_S and await self.leaves_kept_turns(
                self.taken_with(ticket, ahead), [turn], now, start=start
            ):
                break
            ahead.add_share(Load.of(turn.ticket), 1.0 if turn.caller is not None else show_rate)
            floor = max(floor, turn.lapses if turn.caller is None else turn.due)
            prediction = await self.predict(ticket, ahead, now, paused_until=paused_until)
        least = floor - now
        return Prediction(
            max(prediction.wait, least), max(prediction.longest, least), max(prediction.back, least)
        )

    def taken_by(self, spec: BucketSpec, amount: float, calls: int) -> float:
        """What ``calls`` calls taking ``amount`` in all take from a bucket, with the lane's reserve (counted
        at their average)."""
        if calls <= 0:
            return 0.0
        return calls * spec.reserve(amount / calls, self._headroom_s)[1]

    def refusal(
        self,
        ticket: Ticket,
        prediction: Prediction,
        *,
        back: float,
        kept: bool,
        stated: Prediction | None = None,
    ) -> RateLimitError:
        """The refusal of a call predicted to start as ``prediction`` says if it waited, told to come back
        ``back`` from now (``kept``: to its kept turn); the wait it states is ``stated``'s (``queue_wait``) if
        given, else ``prediction``'s."""
        if stated is not None:
            prediction = stated
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

    async def share_queued(self, joining: Ticket | None = None) -> None:
        """Tell the other gateway processes sharing the lane's buckets how many calls wait here (with
        ``joining``, about to) and what they will take (requests, input, output), and hear the same of
        theirs (see ``_others_ahead``)."""
        fair, kept = self._fair.load, self._kept.load
        calls = fair.calls + kept.calls
        input_tokens = fair.input + kept.input
        output_tokens = fair.output + kept.output
        if joining is not None:
            calls += 1
            input_tokens += joining.input_tokens
            output_tokens += joining.output_tokens
        lane = self.lane
        queued = [
            float(calls),
            self.taken_by(lane.requests, float(calls), calls),
            self.taken_by(lane.input_tokens, input_tokens, calls),
            self.taken_by(lane.output_tokens, output_tokens, calls),
        ]
        others = await self._state.share_demand(lane.lane, self._member, queued, _DEMAND_TTL_S)
        self.others_queued = [record for record in others if len(record) == len(queued) and record[0] > 0]

    def _others_ahead(self, position: int) -> list[float]:
        """What calls queued by other gateway processes sharing the buckets will take (requests, input,
        output) before the call at ``position`` here starts. Each process's dispatcher takes for the call at
        the head of its queue when the buckets allow, so the processes with calls waiting take turns: about
        as many of each one's calls go first as of this one's (and half a call more: who takes first in a
        round is a race)."""
        ahead = [0.0, 0.0, 0.0]
        for count, *takes in self.others_queued:
            share = min(count, position - 0.5) / count
            for index, take in enumerate(takes):
                ahead[index] += share * take
        return ahead
