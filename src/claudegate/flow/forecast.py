"""What a lane has learnt from its replies, and where its buckets will stand ahead of now.

Admission predicts when a waiting call starts from the buckets' levels and refill rates, and from what the
calls in flight will give back to the output bucket, or owe, as they settle (see ``projection``): judged
from the lane's recent replies once there are enough of them, before that as each call giving back the
average surplus of its reservation. The calls queued ahead give back their expected surplus over about a
call's duration once started.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Sequence

from claudegate.flow.limits import LaneLimits
from claudegate.flow.projection import CAUTION_Z, STEP_S, InFlight, Projection, Reply, returns_by_step
from claudegate.flow.reply_start import ReplyStart
from claudegate.flow.ticket import Ticket

__all__ = ["LaneHistory"]

_SMOOTHING = 0.2
_INITIAL_CALL_SECONDS = 5.0  # until calls have been timed, a call is assumed to hold its slot this long
# What calls in flight will give back (or owe) is judged from the lane's recent replies, their durations and
# output: this many of them, once there are at least ``_SETTLING_SAMPLES``; until then each call in flight is
# assumed to give back the average surplus of its reservation.
_REPLY_WINDOW = 100
_SETTLING_SAMPLES = 10


class LaneHistory:
    """The lane's recent calls: how long they held a slot, when their replies began, what they produced."""

    __slots__ = ("_ramp_shares", "call_seconds", "replies", "reply_starts", "surplus_output")

    def __init__(self) -> None:
        self.call_seconds = _INITIAL_CALL_SECONDS
        self.reply_starts = {True: ReplyStart(), False: ReplyStart()}  # streamed or not
        # Output reserved beyond what a call is expected to produce, on average: what each call in flight
        # is assumed to give back when it settles, until the lane has timed enough replies.
        self.surplus_output = 0.0
        # Recent complete replies: how long each call ran, from its start, and the output it produced.
        self.replies: deque[Reply] = deque(maxlen=_REPLY_WINDOW)
        self._ramp_shares: tuple[float, ...] = ()

    def started(self, ticket: Ticket) -> None:
        """A call took its tokens: learn how much its reservation exceeds what it is expected to produce."""
        self.surplus_output = (1 - _SMOOTHING) * self.surplus_output + _SMOOTHING * ticket.surplus

    def ended(
        self,
        ticket: Ticket,
        seconds: float,
        first_byte_seconds: float | None,
        output_tokens: int | None,
        now: float,
    ) -> None:
        """A call ended after ``seconds``; its reply began after ``first_byte_seconds``, and (for a reply
        that came complete) it produced ``output_tokens``."""
        if seconds > 0:
            self.call_seconds = (1 - _SMOOTHING) * self.call_seconds + _SMOOTHING * seconds
        if first_byte_seconds is not None:
            self.reply_starts[ticket.streamed].observe(first_byte_seconds, now)
        if output_tokens is not None and math.isfinite(ticket.started_at):
            self.replies.append(Reply(now - ticket.started_at, output_tokens))

    def projections(
        self,
        lane: LaneLimits,
        levels: Sequence[float],
        running: Iterable[Ticket],
        in_flight: int,
        now: float,
        *,
        ahead: float = 0.0,
        ahead_calls: int = 0,
    ) -> list[Projection]:
        """The buckets (requests, input, output) from their ``levels`` now, with what the calls in flight
        (``running``, ``in_flight`` of them) will give back to the output bucket as they settle, or owe, and
        what ``ahead_calls`` calls queued before the one predicted, which reserved ``ahead`` more than they
        are expected to produce, will give back over about a call's duration once started."""
        settling, spread = self._output_returns(running, in_flight, now, ahead=ahead, ahead_calls=ahead_calls)
        return [
            Projection(lane.requests, levels[0]),
            Projection(lane.input_tokens, levels[1]),
            Projection(lane.output_tokens, levels[2], settling, spread),
        ]

    def owed(
        self, lane: LaneLimits, levels: Sequence[float], running: Iterable[Ticket], now: float
    ) -> list[Projection]:
        """The buckets from ``levels`` with only what calls in flight will owe, counted cautiously (as
        cautiously as the time a refused caller is told): what may be counted on for a kept turn."""
        settling: tuple[float, ...] = ()
        if len(self.replies) >= _SETTLING_SAMPLES:
            flying = [
                InFlight(
                    now - ticket.started_at,
                    ticket.output_tokens,
                    math.inf if ticket.max_tokens is None else ticket.max_tokens,
                )
                for ticket in running
            ]
            mean, variance = returns_by_step(flying, self.replies)
            lowest = (m - CAUTION_Z * math.sqrt(v) for m, v in zip(mean, variance, strict=True))
            settling = tuple(min(0.0, settled) for settled in lowest)
        return [
            Projection(lane.requests, levels[0]),
            Projection(lane.input_tokens, levels[1]),
            Projection(lane.output_tokens, levels[2], settling),
        ]

    def _ramp(self) -> tuple[float, ...]:
        """The share of what comes in evenly over about a call's duration that is in by each step."""
        steps = math.ceil(self.call_seconds / STEP_S)
        if len(self._ramp_shares) != steps + 1:
            self._ramp_shares = tuple(min(1.0, step / steps) for step in range(steps + 1))
        return self._ramp_shares

    def _output_returns(
        self,
        running: Iterable[Ticket],
        in_flight: int,
        now: float,
        *,
        ahead: float,
        ahead_calls: int,
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """What comes back to the output bucket by each step from now, and ``CAUTION_Z`` deviations of it
        (see ``projections``)."""
        replies = self.replies
        if len(replies) < _SETTLING_SAMPLES:
            # Too few replies to judge calls in flight by: each gives back the average surplus.
            tokens = max(0.0, in_flight * self.surplus_output + ahead)
            if not tokens:
                return (), ()
            return tuple([tokens * share for share in self._ramp()]), ()
        flying = [
            InFlight(
                now - ticket.started_at,
                ticket.output_tokens,
                math.inf if ticket.max_tokens is None else ticket.max_tokens,
            )
            for ticket in running
        ]
        outputs = [reply.output_tokens for reply in replies]
        mean, variance = returns_by_step(
            flying,
            replies,
            spread_tokens=ahead,
            spread_variance=ahead_calls * statistics.pvariance(outputs),
            spread_s=self.call_seconds,
        )
        return tuple(mean), tuple(CAUTION_Z * math.sqrt(v) for v in variance)
