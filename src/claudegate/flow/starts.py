"""Virtual start times of waiting calls, kept sorted, so that those before a given time are counted in
O(log n).

A queue in the fair order (an organisation at a priority, or a user inside it) has its calls dispatched at
virtual times that step up from its counter by each call's cost over the queue's weight (``fair``). Each
queue's waiting calls are kept here as that many *starts*: the first at the queue's counter, the next one a
step later, and so on. A start is a place in the queue's order, not a given call: a call dispatched from the
head takes the first start away and the rest keep theirs (the counter grew by the step the first one
spanned); a call that leaves without being dispatched takes the last one, since the calls behind it move
up; a counter moved by something else (a call charged to the queue from outside it, or calls joining the
same queue at a higher priority, which go first) moves every start by as much, which for calls alike in cost
is the first start taken away and one added after the last.

All the starts of the queues that compete with each other (the organisations at one priority, the users of
one organisation there) are kept in one sorted list, keyed by (start, queue name, serial): the heap that
picks the next queue breaks ties by name, and so does the count. Counting the starts before a time is then
one bisection, whatever the number of queues or calls.
"""

from __future__ import annotations

from collections import deque

from sortedcontainers import SortedList

__all__ = ["Run", "Starts"]

# Starts are rounded to this many decimals, so that a start reached by adding steps one by one and the same
# start computed at once compare equal (a tie, broken by name as the dispatcher breaks it).
_DIGITS = 9

_Key = tuple[float, str, int]


class Run:
    """The starts of one queue's waiting calls, first to last, and where the next one joining would start."""

    __slots__ = ("keys", "name", "tail")

    def __init__(self, name: str, first: float) -> None:
        self.name = name
        self.keys: deque[_Key] = deque()
        self.tail = first  # the start of a call joining the queue now

    @property
    def head(self) -> float:
        """The start of the queue's first call (where one would start if none waits)."""
        return self.keys[0][0] if self.keys else self.tail


class Starts:
    """The starts of the calls of some competing queues (see the module)."""

    __slots__ = ("_made", "_sorted")

    def __init__(self) -> None:
        self._sorted = SortedList()
        self._made = 0

    def before(self, start: float, name: str) -> int:
        """How many starts come before a call starting at ``start`` in a queue named ``name``: earlier ones,
        and equal ones of queues whose names sort first."""
        return int(self._sorted.bisect_left((round(start, _DIGITS), name, -1)))

    def append(self, run: Run, step: float) -> None:
        """A call joins the end of ``run``'s queue; the next one will start ``step`` later."""
        self._made += 1
        key = (round(run.tail, _DIGITS), run.name, self._made)
        self._sorted.add(key)
        run.keys.append(key)
        run.tail += step

    def take_first(self, run: Run) -> None:
        """The queue's first call was dispatched."""
        self._sorted.remove(run.keys.popleft())

    def take_last(self, run: Run) -> None:
        """A call left the queue without being dispatched: those behind it move up."""
        key = run.keys.pop()
        self._sorted.remove(key)
        run.tail = key[0]

    def shift(self, run: Run, step: float) -> None:
        """The queue's counter moved by ``step`` (later if positive) while its calls wait."""
        if not run.keys:
            run.tail += step
        elif step > 0:
            self.take_first(run)
            self.append(run, step)
        elif step < 0:
            first = run.head + step
            self.take_last(run)
            self._made += 1
            key = (round(first, _DIGITS), run.name, self._made)
            self._sorted.add(key)
            run.keys.appendleft(key)

    def move(self, run: Run, step: float) -> None:
        """Every start of the queue moves by ``step`` (a cost in the number of its calls, which is rare: its
        counter jumped on, see ``FairQueue.enqueue``)."""
        keys = run.keys
        for key in keys:
            self._sorted.remove(key)
        moved = [(round(start + step, _DIGITS), name, made) for start, name, made in keys]
        self._sorted.update(moved)
        run.keys = deque(moved)
        run.tail += step
