"""Weighted fair order across organisations and the users inside them, by priority.

The order is two-level deficit round robin over virtual time: each organisation has a *served* counter that
grows by a call's cost divided by the organisation's weight when one of its calls is dispatched, and each
user inside it one that grows by the cost divided by the user's weight. The next call is the oldest call of
the least-served user of the least-served organisation, at the highest priority that has calls waiting.
An organisation (or user) that starts waiting joins at the level of the least-served one already waiting,
not with credit saved up from idle time, which would let it starve the others for a while.

Heaps keyed by the counters make each decision cost O(log n): ``peek`` and ``pop`` touch the top of one
heap per level. Entries are invalidated lazily: a counter only grows, so an entry whose counter moved on
comes to the top early and is pushed again with its new value.

Predictions do not replay the order. Each queue keeps running totals of what its calls will take
(``Load``), and the virtual start of each of its calls (the queue's counter plus the cost of its calls
before them, over its weight) is kept in one sorted list per priority (organisations) and per organisation
there (users): ``starts``. ``ahead`` counts, for a call about to join, the calls of its organisation that
start before it among its users, which gives its own start among the organisations, and then the calls of
the organisations that start before that: two bisections, O(log n) whatever the number of organisations,
users or calls, and exact when the calls are alike in cost. What the counted calls take is their queues'
average (for the calls of other users, or of other organisations, together). Keeping the starts costs
O(log n) per call joining or leaving, and per call charged from outside the queue; an organisation (or user)
whose counter jumps as it starts waiting at a second priority has its starts at the other moved one by one.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from claudegate.flow.starts import Run, Starts
from claudegate.flow.ticket import Ticket

__all__ = ["FairQueue", "Load"]

_Member = TypeVar("_Member")


@dataclass(slots=True)
class Load:
    """What some queued calls will take: how many, their fair-share cost, their input and output tokens
    (as reserved), and the output reserved beyond what they are expected to produce."""

    calls: int = 0
    cost: float = 0.0
    input: float = 0.0
    output: float = 0.0
    surplus: float = 0.0
    absent: float = 0.0  # of ``calls``, how many are not expected to take anything (``add_share``)

    @property
    def expected_calls(self) -> float:
        return self.calls - self.absent

    def add(self, other: Load) -> None:
        self.calls += other.calls
        self.cost += other.cost
        self.input += other.input
        self.output += other.output
        self.surplus += other.surplus
        self.absent += other.absent

    def count(self, ticket: Ticket, sign: int = 1) -> None:
        self.count_values(sign, *_values(ticket))

    def count_values(self, sign: int, cost: float, input: float, output: float, surplus: float) -> None:
        """Count a call (``sign`` -1: uncount it) by what it takes (``_values``)."""
        self.calls += sign
        if not self.calls:  # no drift left behind by adding and subtracting floats
            self.cost = self.input = self.output = self.surplus = 0.0
            return
        self.cost += sign * cost
        self.input += sign * input
        self.output += sign * output
        self.surplus += sign * surplus

    def first(self, calls: int) -> Load:
        """The share of this load that ``calls`` of its calls take, counted at their average."""
        if calls <= 0 or not self.calls:
            return Load()
        if calls >= self.calls:
            return Load(self.calls, self.cost, self.input, self.output, self.surplus)
        share = calls / self.calls
        return Load(calls, self.cost * share, self.input * share, self.output * share, self.surplus * share)

    def add_share(self, other: Load, share: float) -> None:
        """Add ``other``'s calls, and ``share`` of what they take."""
        self.calls += other.calls
        self.absent += (1.0 - share) * other.expected_calls
        self.cost += share * other.cost
        self.input += share * other.input
        self.output += share * other.output
        self.surplus += share * other.surplus

    @classmethod
    def of(cls, ticket: Ticket) -> Load:
        return cls(1, ticket.cost, ticket.input_tokens, ticket.output_tokens, ticket.surplus)

    def add_part(self, whole: Load, less: Load, calls: int) -> None:
        """Add ``calls`` of the calls in ``whole`` but not in ``less`` (a part of it), at their average."""
        among = whole.calls - less.calls
        if calls <= 0 or among <= 0:
            return
        share = min(calls, among) / among
        self.calls += min(calls, among)
        self.cost += share * (whole.cost - less.cost)
        self.input += share * (whole.input - less.input)
        self.output += share * (whole.output - less.output)
        self.surplus += share * (whole.surplus - less.surplus)


@dataclass(eq=False, slots=True)
class _User:
    run: Run  # its calls' starts among the users of its organisation at this priority
    calls: deque[Ticket] = field(default_factory=deque)
    load: Load = field(default_factory=Load)
    weight: float = 1.0


@dataclass(eq=False, slots=True)
class _Org:
    run: Run  # its calls' starts among the organisations at this priority
    users: dict[str, _User] = field(default_factory=dict)
    heap: list[tuple[float, str]] = field(default_factory=list)  # (served, user)
    starts: Starts = field(default_factory=Starts)  # of its users' calls
    load: Load = field(default_factory=Load)
    weight: float = 1.0


@dataclass(eq=False, slots=True)
class _Level:
    orgs: dict[str, _Org] = field(default_factory=dict)
    heap: list[tuple[float, str]] = field(default_factory=list)  # (served, org)
    starts: Starts = field(default_factory=Starts)  # of its organisations' calls
    load: Load = field(default_factory=Load)


class FairQueue:
    """Calls waiting for a lane, in fair order (see the module)."""

    __slots__ = ("_levels", "_most_served", "_org_served", "_user_served", "load")

    def __init__(self) -> None:
        self._levels: dict[int, _Level] = {}  # by priority
        self._org_served: dict[str, float] = {}
        self._user_served: dict[tuple[str, str], float] = {}
        self._most_served = 0.0  # the highest organisation counter: where one joins when none waits
        self.load = Load()  # every waiting call

    def __len__(self) -> int:
        return self.load.calls

    # -- order --------------------------------------------------------------------------------------------

    def enqueue(self, ticket: Ticket) -> None:
        priority, org_name, user_name = ticket.priority, ticket.org, ticket.user
        level = self._levels.get(priority)
        if level is None:
            level = self._levels[priority] = _Level()
        org = level.orgs.get(org_name)
        if org is None:
            saved = self._org_served.get(org_name, 0.0)
            served = max(saved, self._org_floor(level))
            self._org_served[org_name] = served
            if served > saved and len(self._levels) > 1:
                self._moved(org_name, None, served - saved)
            first = served + self._served_above(priority, org_name)
            org = level.orgs[org_name] = _Org(Run(org_name, first))
            heapq.heappush(level.heap, (served, org_name))
        org.weight = ticket.org_weight
        user = org.users.get(user_name)
        if user is None:
            key = (org_name, user_name)
            saved = self._user_served.get(key, 0.0)
            served = max(saved, self._user_floor(org_name, org))
            self._user_served[key] = served
            if served > saved and len(self._levels) > 1:
                self._moved(org_name, user_name, served - saved)
            first = served + self._served_above(priority, org_name, user_name)
            user = org.users[user_name] = _User(Run(user_name, first))
            heapq.heappush(org.heap, (served, user_name))
        user.weight = ticket.user_weight
        user.calls.append(ticket)
        values = _values(ticket)
        cost = values[0]
        level.starts.append(org.run, cost / org.weight)
        org.starts.append(user.run, cost / user.weight)
        for load in (user.load, org.load, level.load, self.load):
            load.count_values(1, *values)
        if len(self._levels) > 1:  # its organisation's (and user's) calls at lower priorities start later
            self._shift_below(ticket, cost)

    def peek(self) -> Ticket | None:
        """The call to dispatch next."""
        if not self._levels:
            return None
        level = self._levels[max(self._levels)]
        org_name, org = self._top(level.heap, level.orgs, self._served_org)
        _, user = self._top(org.heap, org.users, lambda user: self._user_served[(org_name, user)])
        return user.calls[0]

    def charge(self, ticket: Ticket) -> None:
        """A call of this lane took its tokens outside the queue (it did not wait, or it was a kept turn):
        count it against its shares; its organisation's and user's waiting calls start later."""
        self._count_served(ticket)
        if not self._levels:
            return
        cost = ticket.cost
        for level in self._levels.values():
            org = level.orgs.get(ticket.org)
            if org is not None:
                level.starts.shift(org.run, cost / ticket.org_weight)
                if (user := org.users.get(ticket.user)) is not None:
                    org.starts.shift(user.run, cost / ticket.user_weight)

    def pop(self, ticket: Ticket) -> None:
        """Dispatch ``ticket``, the call ``peek`` returned: it leaves the queue and is charged."""
        if self._drop(ticket, dispatched=True):
            self._count_served(ticket)
        # Counters only grow: the entries pushed at the old values are found stale at the top and pushed
        # again (``_top``).

    def remove(self, ticket: Ticket) -> None:
        """Take a call out of the queue without charging it (it was refused or its caller left)."""
        if self._drop(ticket, dispatched=False) and self._levels:  # its level may have gone with it
            self._shift_below(ticket, -ticket.cost)

    # -- predictions --------------------------------------------------------------------------------------

    def ahead(self, ticket: Ticket) -> Load:
        """What the calls that would be dispatched before ``ticket`` take, were it queued now (see the
        module); ``ticket`` is not in the queue."""
        total = Load()
        priority = ticket.priority
        for other, above in self._levels.items():
            if other > priority:
                total.add(above.load)
        level = self._levels.get(priority)
        if level is None:
            return total
        org = level.orgs.get(ticket.org)
        if org is None:
            start = max(self._org_served.get(ticket.org, 0.0), self._org_floor(level))
            start += self._served_above(priority, ticket.org)
            before = level.starts.before(start, ticket.org)
            total.add_part(level.load, Load(), before)
            return total
        user = org.users.get(ticket.user)
        within = Load()
        if user is None:
            key = (ticket.org, ticket.user)
            user_start = max(self._user_served.get(key, 0.0), self._user_floor(ticket.org, org))
            user_start += self._served_above(priority, ticket.org, ticket.user)
            own = Load()
        else:
            user_start = user.run.tail
            own = user.load
            within.add(own)
        # The starts before it among its organisation's users include all of its own user's calls.
        within.add_part(org.load, own, org.starts.before(user_start, ticket.user) - own.calls)
        start = org.run.head + within.cost / org.weight
        # The starts before it among the organisations include those of its own organisation's calls.
        others = level.starts.before(start, ticket.org) - within.calls
        total.add(within)
        total.add_part(level.load, org.load, others)
        return total

    # -- helpers ------------------------------------------------------------------------------------------

    def _count_served(self, ticket: Ticket) -> None:
        served = self._org_served.get(ticket.org, 0.0) + ticket.cost / ticket.org_weight
        self._org_served[ticket.org] = served
        self._most_served = max(self._most_served, served)
        key = (ticket.org, ticket.user)
        self._user_served[key] = self._user_served.get(key, 0.0) + ticket.cost / ticket.user_weight

    def _drop(self, ticket: Ticket, *, dispatched: bool) -> bool:
        """Take a call out of its queues (and its start: the first, if ``dispatched``, else the last); False
        if it was not queued."""
        level = self._levels.get(ticket.priority)
        org = level.orgs.get(ticket.org) if level is not None else None
        user = org.users.get(ticket.user) if org is not None else None
        if level is None or org is None or user is None:
            return False
        calls = user.calls
        if calls and calls[0] is ticket:
            calls.popleft()
        elif calls and calls[-1] is ticket:
            calls.pop()
        elif ticket in calls:
            calls.remove(ticket)
        else:
            return False
        if dispatched:
            level.starts.take_first(org.run)
            org.starts.take_first(user.run)
        else:
            level.starts.take_last(org.run)
            org.starts.take_last(user.run)
        values = _values(ticket)
        for load in (user.load, org.load, level.load, self.load):
            load.count_values(-1, *values)
        if not calls:
            del org.users[ticket.user]
            if not org.users:
                del level.orgs[ticket.org]
                if not level.orgs:
                    del self._levels[ticket.priority]
        return True

    def _shift_below(self, ticket: Ticket, cost: float) -> None:
        """A call of ``cost`` (negative: leaving) joined a priority: the calls its organisation and user have
        waiting at lower priorities start that much later (their counters will have grown by then)."""
        for priority, level in self._levels.items():
            if priority >= ticket.priority:
                continue
            org = level.orgs.get(ticket.org)
            if org is not None:
                level.starts.shift(org.run, cost / ticket.org_weight)
                if (user := org.users.get(ticket.user)) is not None:
                    org.starts.shift(user.run, cost / ticket.user_weight)

    def _moved(self, org_name: str, user_name: str | None, step: float) -> None:
        """An organisation's counter (or, with ``user_name``, a user's) moved on by ``step`` as it joined
        a priority: its calls waiting at the others start that much later."""
        for level in self._levels.values():
            org = level.orgs.get(org_name)
            if org is None:
                continue
            if user_name is None:
                level.starts.move(org.run, step)
            elif (user := org.users.get(user_name)) is not None:
                org.starts.move(user.run, step)

    def _served_above(self, priority: int, org: str, user: str | None = None) -> float:
        """How much an organisation's (or a user's) counter will grow while the calls it has waiting at
        higher priorities than ``priority`` are dispatched first."""
        grown = 0.0
        for other, level in self._levels.items():
            if other <= priority:
                continue
            waiting = level.orgs.get(org)
            if waiting is None:
                continue
            if user is None:
                grown += waiting.load.cost / waiting.weight
            elif (member := waiting.users.get(user)) is not None:
                grown += member.load.cost / member.weight
        return grown

    def _served_org(self, org: str) -> float:
        return self._org_served[org]

    def _org_floor(self, level: _Level) -> float:
        if not level.orgs:
            return self._most_served
        name, _ = self._top(level.heap, level.orgs, self._served_org)
        return self._org_served[name]

    def _user_floor(self, org_name: str, org: _Org) -> float:
        if not org.users:
            return 0.0
        name, _ = self._top(org.heap, org.users, lambda user: self._user_served[(org_name, user)])
        return self._user_served[(org_name, name)]

    @staticmethod
    def _top(
        heap: list[tuple[float, str]], active: dict[str, _Member], served: Callable[[str], float]
    ) -> tuple[str, _Member]:
        """The least-served active member of ``heap``, dropping entries of members no longer waiting and
        renewing those whose counter moved on."""
        while True:
            value, name = heap[0]
            member = active.get(name)
            if member is None:
                heapq.heappop(heap)
                continue
            current = served(name)
            if current != value:
                heapq.heapreplace(heap, (current, name))
                continue
            return name, member


def _values(ticket: Ticket) -> tuple[float, float, float, float]:
    """What a call takes, as a ``Load`` counts it: its cost, input, output and surplus."""
    return ticket.cost, ticket.input_tokens, ticket.output_tokens, ticket.surplus
