"""How long after dispatch a lane's replies begin: the high estimate admission promises starts against."""

from __future__ import annotations

from collections import deque

from claudegate.flow.ticket import Ticket

__all__ = ["ReplyStart", "slow_reply"]

_SMOOTHING = 0.2
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


def slow_reply(ticket: Ticket) -> float:
    """How long the call's reply may take to begin at most, before the lane has timed any."""
    if ticket.streamed:
        return _UNTIMED_FIRST_BYTE_S
    if ticket.max_tokens is None:
        return _UNTIMED_JSON_REPLY_S
    return _UNTIMED_FIRST_BYTE_S + ticket.max_tokens / _UNTIMED_TOKENS_PER_S
