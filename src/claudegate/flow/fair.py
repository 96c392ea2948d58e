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
(``Load``), and ``ahead`` counts, for a call about to join, how many of each other queue's calls start
before it: those whose virtual start (the queue's counter plus the cost of its calls before them) is below
the call's own. Within a queue the calls are counted at their average cost, which is exact when its calls
are alike. The cost is one step per organisation waiting at the call's priority and per user waiting in the
call's organisation, whatever the number of calls.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from claudegate.flow.ticket import Ticket

__all__ = ["FairQueue", "Load"]

_EPSILON = 1e-9
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
        self.calls += sign
        if not self.calls:  # no drift left behind by adding and subtracting floats
            self.cost = self.input = self.output = self.surplus = 0.0
            return
        self.cost += sign * ticket.cost
        self.input += sign * ticket.input_tokens
        self.output += sign * ticket.output_tokens
        self.surplus += sign * ticket.surplus

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


@dataclass(eq=False, slots=True)
class _User:
    calls: deque[Ticket] = field(default_factory=deque)
    load: Load = field(default_factory=Load)
    weight: float = 1.0


@dataclass(eq=False, slots=True)
class _Org:
    users: dict[str, _User] = field(default_factory=dict)
    heap: list[tuple[float, str]] = field(default_factory=list)  # (served, user)
    load: Load = field(default_factory=Load)
    weight: float = 1.0


@dataclass(eq=False, slots=True)
class _Level:
    orgs: dict[str, _Org] = field(default_factory=dict)
    heap: list[tuple[float, str]] = field(default_factory=list)  # (served, org)
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
        level = self._levels.get(ticket.priority)
        if level is None:
            level = self._levels[ticket.priority] = _Level()
        org = level.orgs.get(ticket.org)
        if org is None:
            served = max(self._org_served.get(ticket.org, 0.0), self._org_floor(level))
            self._org_served[ticket.org] = served
            org = level.orgs[ticket.org] = _Org()
            heapq.heappush(level.heap, (served, ticket.org))
        org.weight = ticket.org_weight
        user = org.users.get(ticket.user)
        if user is None:
            key = (ticket.org, ticket.user)
            served = max(self._user_served.get(key, 0.0), self._user_floor(ticket.org, org))
            self._user_served[key] = served
            user = org.users[ticket.user] = _User()
            heapq.heappush(org.heap, (served, ticket.user))
        user.weight = ticket.user_weight
        user.calls.append(ticket)
        for load in (user.load, org.load, level.load, self.load):
            load.count(ticket)

    def peek(self) -> Ticket | None:
        """The call to dispatch next."""
        if not self._levels:
            return None
        level = self._levels[max(self._levels)]
        org_name, org = self._top(level.heap, level.orgs, self._served_org)
        _, user = self._top(org.heap, org.users, lambda user: self._user_served[(org_name, user)])
        return user.calls[0]

    def charge(self, ticket: Ticket) -> None:
        """A call of this lane took its tokens (queued or not): count it against its shares."""
        served = self._org_served.get(ticket.org, 0.0) + ticket.cost / ticket.org_weight
        self._org_served[ticket.org] = served
        self._most_served = max(self._most_served, served)
        key = (ticket.org, ticket.user)
        self._user_served[key] = self._user_served.get(key, 0.0) + ticket.cost / ticket.user_weight

    def pop(self, ticket: Ticket) -> None:
        """Dispatch ``ticket``, the call ``peek`` returned: it leaves the queue and is charged."""
        self.remove(ticket)
        self.charge(ticket)
        # Counters only grow: the entries pushed at the old values are found stale at the top and pushed
        # again (``_top``).

    def remove(self, ticket: Ticket) -> None:
        """Take a call out of the queue without charging it (it was refused or its caller left)."""
        level = self._levels.get(ticket.priority)
        org = level.orgs.get(ticket.org) if level is not None else None
        user = org.users.get(ticket.user) if org is not None else None
        if level is None or org is None or user is None:
            return
        calls = user.calls
        if calls and calls[0] is ticket:
            calls.popleft()
        elif calls and calls[-1] is ticket:
            calls.pop()
        elif ticket in calls:
            calls.remove(ticket)
        else:
            return
        for load in (user.load, org.load, level.load, self.load):
            load.count(ticket, -1)
        if not calls:
            del org.users[ticket.user]
            if not org.users:
                del level.orgs[ticket.org]
                if not level.orgs:
                    del self._levels[ticket.priority]

    # -- predictions --------------------------------------------------------------------------------------

    def ahead(self, ticket: Ticket) -> Load:
        """What the calls that would be dispatched before ``ticket`` take, were it queued now (see the
        module); ``ticket`` is not in the queue."""
        total = Load()
        higher = [level for priority, level in self._levels.items() if priority > ticket.priority]
        for above in higher:
            total.add(above.load)
        level = self._levels.get(ticket.priority)
        if level is None:
            return total
        org = level.orgs.get(ticket.org)
        within = Load()
        if org is None:
            org_start = max(self._org_served.get(ticket.org, 0.0), self._org_floor(level))
            org_start += _served_above(higher, ticket.org)
        else:
            org_start = self._org_served[ticket.org] + _served_above(higher, ticket.org)
            user = org.users.get(ticket.user)
            key = (ticket.org, ticket.user)
            if user is None:
                user_start = max(self._user_served.get(key, 0.0), self._user_floor(ticket.org, org))
                user_start += _served_above(higher, ticket.org, ticket.user)
            else:
                user_start = self._user_served[key] + _served_above(higher, ticket.org, ticket.user)
                user_start += user.load.cost / user.weight
                within.add(user.load)
            user_served = self._user_served
            for name, other in org.users.items():
                if other is not user:
                    served = user_served[(ticket.org, name)]
                    if higher:
                        served += _served_above(higher, ticket.org, name)
                    _add_before(
                        within, served, other.load, other.weight, user_start, first_on_tie=name < ticket.user
                    )
        total.add(within)
        start = org_start + within.cost / ticket.org_weight
        org_served = self._org_served
        for name, other_org in level.orgs.items():
            if other_org is not org:
                served = org_served[name]
                if higher:
                    served += _served_above(higher, name)
                _add_before(
                    total, served, other_org.load, other_org.weight, start, first_on_tie=name < ticket.org
                )
        return total

    # -- helpers ------------------------------------------------------------------------------------------

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


def _served_above(higher: list[_Level], org: str, user: str | None = None) -> float:
    """How much an organisation's (or a user's) counter will grow while the calls it has waiting at higher
    priorities are dispatched first."""
    grown = 0.0
    for level in higher:
        waiting = level.orgs.get(org)
        if waiting is None:
            continue
        if user is None:
            grown += waiting.load.cost / waiting.weight
        elif (member := waiting.users.get(user)) is not None:
            grown += member.load.cost / member.weight
    return grown


def _add_before(
    total: Load, served: float, load: Load, weight: float, start: float, *, first_on_tie: bool
) -> None:
    """Add to ``total`` the calls of a queue (``load``, counted at their average cost) that start before a
    call whose virtual start is ``start``: the queue's calls start at ``served`` plus the cost of those before
    them over the queue's ``weight``; ``first_on_tie``: the queue goes first when a start is the same."""
    queued = load.calls
    if not queued or start < served - _EPSILON:
        return
    position = (start - served) * weight * queued / load.cost if load.cost > 0 else math.inf
    if position >= queued:
        total.add(load)
        return
    nearest = round(position)
    if first_on_tie and abs(position - nearest) < _EPSILON:
        calls = nearest + 1
    else:
        calls = math.ceil(position - _EPSILON)
    if calls <= 0:
        return
    if calls >= queued:
        total.add(load)
        return
    share = calls / queued
    total.calls += calls
    total.cost += load.cost * share
    total.input += load.input * share
    total.output += load.output * share
    total.surplus += load.surplus * share
