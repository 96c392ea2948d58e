"""Where a lane's buckets will stand ahead of now: their refill, and what calls give back as they settle.

A call takes its reservation of output when it starts and is settled with its real output when it ends: it
gives back what it did not use, or takes what it produced beyond the reservation. What the calls in flight
will give back, and when, is judged from the lane's recent replies (``Reply``: how long each ran and what it
produced). A call in flight is one of the recent replies that ran longer than it has so far, each as likely:
it will end after their remaining time, with their output. The average call gives back a little
(reservations are above the average), but a call still running after most replies have ended is a long one
that will owe, and a prediction that counted the average surplus for it would promise tokens that the long
replies then take.

What comes back is known in expectation and in variance, step by step (``STEP_S``); a ``Projection`` adds it
to a bucket's level and refill, and finds when the bucket will have supplied a given amount. Its
``cautious`` form counts what comes back as that many deviations less (``CAUTION_Z``): a refused caller
told to come back when its turn is ready finds it ready, most of the time, even when the calls before it
produce more than average.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from claudegate.flow.state import BucketSpec

__all__ = [
    "CAUTION_Z",
    "STEP_S",
    "InFlight",
    "Projection",
    "Reply",
    "bucket_ready",
    "bucket_wait",
    "returns_by_step",
]

STEP_S = 0.25  # the resolution, in time, of what calls give back
# A cautious projection counts what comes back as this many standard deviations less than expected: the
# total given back falls short of that about one time in ten.
CAUTION_Z = 1.28


@dataclass(frozen=True, slots=True)
class Reply:
    """A recent complete reply of the lane: how long its call ran, from its start, and the output it made."""

    seconds: float
    output_tokens: int


@dataclass(frozen=True, slots=True)
class InFlight:
    """A call in flight: how long it has run, the output it reserved, and the most it may produce."""

    elapsed: float
    reserved: float
    max_tokens: float = math.inf


# A tuple: one is made per bucket for every prediction, and a tuple is the cheapest to make.
class Projection(NamedTuple):
    """A bucket's level ahead of now: it refills at its rate, and ``settling[i]`` is what calls will have
    given back (negative: taken) by ``i`` steps of ``STEP_S`` from now (the last value holds after that),
    give or take ``spread[i]`` (``CAUTION_Z`` deviations)."""

    spec: BucketSpec
    level: float
    settling: tuple[float, ...] = ()
    spread: tuple[float, ...] = ()

    def cautious(self) -> Projection:
        """This projection with what comes back counted as ``spread`` less."""
        if not self.spread:
            return self
        lowered = tuple(settled - spread for settled, spread in zip(self.settling, self.spread, strict=True))
        return Projection(self.spec, self.level, lowered)

    def supplied(self, seconds: float) -> float:
        """The level ``seconds`` from now, not capped at the bucket's capacity (the needs of several queued
        calls add up beyond it: this is what the bucket will have supplied by then)."""
        settling = self.settling
        settled = settling[min(len(settling) - 1, int(seconds / STEP_S))] if settling else 0.0
        return self.level + self.spec.rate * seconds + settled

    def until(self, needed: float) -> float:
        """Seconds until ``supplied`` first reaches ``needed``."""
        settling = self.settling
        if not settling:
            return self._refilled(needed)
        last = len(settling) - 1
        # Within a step what has come back is fixed and the refill rises, so within a step the level is
        # first reached where the refill makes up what is still missing; no step before the one where even
        # the most that ever comes back would do can reach it.
        first = min(last, int(self._refilled(needed - max(settling)) / STEP_S))
        for step in range(first, last):
            seconds = max(step * STEP_S, self._refilled(needed - settling[step]))
            if seconds < (step + 1) * STEP_S:
                return seconds
        return max(last * STEP_S, self._refilled(needed - settling[last]))

    def steady(self, needed: float) -> float:
        """Seconds until ``supplied`` reaches ``needed`` for good: a debt that lands after the bucket first
        held enough may take it below again (``until``), and a turn kept for later must be there when its
        caller comes, a little after its time."""
        settling = self.settling
        if not settling:
            return self._refilled(needed)
        last = len(settling) - 1
        # From the last step back: the latest step in which the level is still short ends the shortage.
        for step in range(last, -1, -1):
            start = step * STEP_S
            crossing = max(start, self._refilled(needed - settling[step]))
            if crossing > start:
                return crossing if step == last else min(crossing, start + STEP_S)
        return 0.0

    def _refilled(self, needed: float) -> float:
        """Seconds until the level, by refill alone, reaches ``needed``."""
        return max(0.0, needed - self.level) / self.spec.rate


def bucket_wait(buckets: Iterable[Projection], needs: Iterable[float]) -> float:
    """Seconds until every bucket has supplied its share of ``needs``."""
    wait = 0.0
    for bucket, needed in zip(buckets, needs, strict=True):
        wait = max(wait, bucket.until(needed))
    return wait


def bucket_ready(buckets: Iterable[Projection], needs: Iterable[float]) -> float:
    """Seconds until every bucket has supplied its share of ``needs`` for good (``Projection.steady``)."""
    return max((bucket.steady(needed) for bucket, needed in zip(buckets, needs, strict=True)), default=0.0)


def returns_by_step(
    in_flight: Sequence[InFlight],
    replies: Sequence[Reply],
    *,
    spread_tokens: float = 0.0,
    spread_variance: float = 0.0,
    spread_s: float = 0.0,
) -> tuple[list[float], list[float]]:
    """What the calls in flight (judged from ``replies``, see the module), and ``spread_tokens`` coming in
    evenly over ``spread_s`` seconds with a variance of ``spread_variance`` in all (calls not yet started),
    will have given back by each step from now: the expectation and the variance of the total."""
    ordered = sorted(replies, key=lambda reply: reply.seconds)
    durations = [reply.seconds for reply in ordered]
    outcomes = [_outcomes(call, ordered, durations) for call in in_flight]
    spread_steps = math.ceil(spread_s / STEP_S)
    length = max([spread_steps + 1, *(max(step for step, _ in ends) + 1 for ends in outcomes)])
    mean = [0.0] * length
    variance = [0.0] * length
    for ends in outcomes:
        # The call ends at one of its outcomes, each as likely: its give-back by each step has these first
        # two moments, and the calls are independent, so their variances add up.
        share = 1.0 / len(ends)
        first = [0.0] * length
        second = [0.0] * length
        for step, amount in ends:
            first[step] += share * amount
            second[step] += share * amount * amount
        moment1 = moment2 = 0.0
        for step in range(length):
            moment1 += first[step]
            moment2 += second[step]
            mean[step] += moment1
            variance[step] += max(0.0, moment2 - moment1 * moment1)
    if spread_tokens or spread_variance:
        for step in range(length):
            share = min(1.0, step / spread_steps) if spread_steps else 1.0
            mean[step] += share * spread_tokens
            variance[step] += share * spread_variance
    return mean, variance


def _outcomes(
    call: InFlight, replies: Sequence[Reply], durations: Sequence[float]
) -> list[tuple[int, float]]:
    """How a call in flight may end (the step from now, what it gives back), each as likely: as one of the
    recent replies that ran longer than it has so far; as the longest of them, about now, if none did."""
    longer = replies[bisect.bisect_right(durations, call.elapsed) :]
    if not longer:
        longest = max(reply.output_tokens for reply in replies)
        return [(0, call.reserved - min(call.max_tokens, longest))]
    return [
        (
            max(0, math.ceil((reply.seconds - call.elapsed) / STEP_S)),
            call.reserved - min(call.max_tokens, reply.output_tokens),
        )
        for reply in longer
    ]
