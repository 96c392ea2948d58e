"""Kept turns: the places in a lane's order of refused calls whose callers are expected back.

A call refused because it cannot start before its deadline keeps its turn when it can be known again (its
key and body: ``Ticket.place``). The turn stays in the order at the place the call had: its place comes
once as many calls have left the queue as were ahead of it when it was refused (its *barrier*), before any
call that arrived since. Shortly before the time its caller was told, it takes the call's tokens and a
concurrency slot and holds them until its caller comes back, so that the caller starts at once; a caller
back at its time goes first. A turn whose caller is not back soon after that time lapses, and gives back
what it took. How often callers come back (``show_rate``) tells how much the turns ahead of a call count.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass

from claudegate.flow.fair import Load
from claudegate.flow.ticket import Ticket

__all__ = ["KeptTurn", "KeptTurns"]

# A kept turn lapses this long after the time its caller was told, plus a share of the wait: long enough for
# the network and a busy client, short enough that what is kept for an absent caller soon goes to others.
_GRACE_S = 0.25
_GRACE_SHARE = 0.02
_EARLY_S = 0.25  # a caller back this much (plus a share of the wait) before its turn is early
_EARLY_SHARE = 0.1
# The share of turns claimed by their callers is counted over this many recent turns.
_SHOW_WINDOW = 50


@dataclass(eq=False, slots=True)
class KeptTurn:
    """One refused call's kept turn."""

    ticket: Ticket  # what the turn takes when dispatched: the refused call's estimates, or its caller's
    place: Hashable
    barrier: int  # dispatched once the queue's departures reach this
    order: int  # among turns with the same barrier: refused first, first
    due: float  # when its caller was told to come back
    early: float  # a caller back before this did not wait as told: it queues as a new call
    lapses: float  # when the turn, and what it took, are given up
    taken: tuple[float, float, float] | None = None  # requests, input, output taken at its dispatch
    caller: Ticket | None = None  # the caller, back and waiting for the turn to be dispatched
    timer: asyncio.TimerHandle | None = None

    @property
    def ready(self) -> bool:
        return self.taken is not None

    @property
    def key(self) -> tuple[int, int]:
        return (self.barrier, self.order)

    def tell(self, ready: float, now: float, lapse: Callable[[KeptTurn], None]) -> None:
        """Its caller is told to come back when the turn is ``ready`` (seconds from ``now``), at a whole
        second: callers that read retry-after (whole seconds, rounded up) and those that read retry-after-ms
        then come back together. ``lapse`` is called if the caller is not back soon after that."""
        back = max(1.0, float(math.ceil(ready - 1e-9)))
        self.due = now + back
        self.early = self.due - _EARLY_S - _EARLY_SHARE * back
        self.lapses = self.due + _GRACE_S + _GRACE_SHARE * back
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_at(self.lapses, lapse, self)


class KeptTurns:
    """The kept turns of one lane: those waiting to be dispatched in barrier order, and all by place."""

    __slots__ = ("_by_place", "_made", "_pending", "_shows", "callers_back", "load")

    def __init__(self) -> None:
        self._by_place: dict[Hashable, KeptTurn] = {}
        self._pending: list[KeptTurn] = []  # not dispatched yet, by (barrier, order)
        self._made = 0
        self._shows: deque[bool] = deque(maxlen=_SHOW_WINDOW)  # recent turns: claimed, or not
        self.callers_back: list[KeptTurn] = []  # not dispatched yet, and their callers waiting for them
        self.load = Load()  # what the turns not dispatched yet will take

    @property
    def show_rate(self) -> float:
        """The share of recent turns whose callers came back for them, starting from one that did and one
        that did not (so 0.5 before any turn has ended, and never quite 0 or 1)."""
        return (sum(self._shows) + 1) / (len(self._shows) + 2)

    @property
    def cautious_show_rate(self) -> float:
        """The same, starting from one that did: until callers have been seen not to come back, a refused
        caller is told a time that allows for every caller before it coming back."""
        return (sum(self._shows) + 1) / (len(self._shows) + 1)

    def showed(self, claimed: bool) -> None:
        """A turn's caller came back for it in time (``claimed``), or did not."""
        self._shows.append(claimed)

    def __bool__(self) -> bool:
        return bool(self._by_place)

    @property
    def unclaimed(self) -> int:
        """Turns whose callers are not back yet."""
        return sum(1 for turn in self._by_place.values() if turn.caller is None)

    @property
    def claimed_pending(self) -> int:
        """Callers back and waiting for their turns to be dispatched."""
        return len(self.callers_back)

    def claim(self, turn: KeptTurn, caller: Ticket) -> None:
        """The turn's caller is back and waits for it (the turn takes what the caller's call needs)."""
        if not turn.ready:
            self.load.count(turn.ticket, -1)
            self.load.count(caller)
        turn.ticket = turn.caller = caller
        self.callers_back.append(turn)

    def unclaim(self, turn: KeptTurn) -> None:
        """The caller waiting for the turn was refused: the turn is kept for it again."""
        turn.caller = None
        if turn in self.callers_back:
            self.callers_back.remove(turn)

    def keep(self, ticket: Ticket, place: Hashable, *, barrier: int) -> KeptTurn:
        """Keep a refused call's turn; its times are set by whoever tells its caller when to come back."""
        self._made += 1
        turn = KeptTurn(ticket, place, barrier, self._made, due=0.0, early=0.0, lapses=0.0)
        self._by_place[place] = turn
        bisect.insort(self._pending, turn, key=lambda kept: kept.key)
        self.load.count(ticket)
        return turn

    def find(self, place: Hashable) -> KeptTurn | None:
        return self._by_place.get(place)

    def head(self) -> KeptTurn | None:
        """The turn to dispatch first once its barrier is reached."""
        return self._pending[0] if self._pending else None

    def pending(self) -> Iterator[KeptTurn]:
        """Turns not dispatched yet, in the order they will be."""
        return iter(self._pending)

    def due_by(self, when: float) -> KeptTurn | None:
        """The turn not dispatched yet whose caller was told the earliest time, if that is by ``when``: its
        caller was promised a turn ready then, whatever still waits before its place in the order."""
        due = min(self._pending, key=lambda turn: turn.due, default=None)
        return due if due is not None and due.due <= when else None

    def next_due(self) -> float:
        """The earliest time a turn not dispatched yet was told (inf if none)."""
        return min((turn.due for turn in self._pending), default=math.inf)

    def reached(self, departures: int) -> list[KeptTurn]:
        """Turns not dispatched yet whose barriers ``departures`` has reached."""
        reached: list[KeptTurn] = []
        for turn in self._pending:
            if turn.barrier > departures:
                break
            reached.append(turn)
        return reached

    def dispatched(self, turn: KeptTurn, taken: tuple[float, float, float]) -> None:
        """The turn took its tokens: it waits for its caller."""
        self._pending.remove(turn)
        self.load.count(turn.ticket, -1)
        turn.taken = taken

    def drop(self, turn: KeptTurn) -> bool:
        """Forget a turn (claimed by its caller, lapsed, or given up); True if it was not dispatched yet."""
        if self._by_place.get(turn.place) is turn:
            del self._by_place[turn.place]
        if turn.timer is not None:
            turn.timer.cancel()
            turn.timer = None
        if turn in self.callers_back:
            self.callers_back.remove(turn)
        if turn.taken is None and turn in self._pending:
            self._pending.remove(turn)
            self.load.count(turn.ticket, -1)
            return True
        return False
