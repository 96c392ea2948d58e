"""The fair order of waiting calls, and the predictions made from its running totals."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from claudegate.flow.fair import FairQueue
from claudegate.flow.ticket import Ticket


def call(
    org: str, user: str = "u", *, org_weight: float = 1.0, user_weight: float = 1.0, priority: int = 0
) -> Ticket:
    return Ticket(
        org, user, 0, 0, deadline=math.inf, org_weight=org_weight, user_weight=user_weight, priority=priority
    )


def drain(queue: FairQueue) -> list[Ticket]:
    order: list[Ticket] = []
    while (head := queue.peek()) is not None:
        queue.pop(head)
        order.append(head)
    return order


def test_organisations_take_turns_by_weight() -> None:
    queue = FairQueue()
    for _ in range(6):
        queue.enqueue(call("big", org_weight=2.0))
    for _ in range(3):
        queue.enqueue(call("small"))
    order = "".join(ticket.org[0] for ticket in drain(queue))
    assert order == "bsbbsbbsb"  # two of the heavier organisation's calls for each of the other's


def test_users_share_their_organisations_part_and_priorities_go_first() -> None:
    queue = FairQueue()
    for _ in range(4):
        queue.enqueue(call("org", "alice"))
    queue.enqueue(call("org", "bob"))
    queue.enqueue(call("other", priority=1))
    order = [f"{ticket.org}/{ticket.user}" for ticket in drain(queue)]
    assert order == ["other/u", "org/alice", "org/bob", "org/alice", "org/alice", "org/alice"]


def test_an_organisation_that_starts_waiting_joins_the_current_round_without_saved_credit() -> None:
    queue = FairQueue()
    for _ in range(10):
        queue.charge(call("busy"))  # served for a while with nobody else waiting
    for _ in range(3):
        queue.enqueue(call("busy"))
    queue.enqueue(call("idle"))
    queue.enqueue(call("idle"))
    order = "".join(ticket.org[0] for ticket in drain(queue))
    assert order == "bibib"  # not both of the idle one's calls first


def test_a_removed_call_is_no_longer_counted_or_dispatched() -> None:
    queue = FairQueue()
    calls = [call("a") for _ in range(3)]
    for ticket in calls:
        queue.enqueue(ticket)
    queue.remove(calls[1])
    assert len(queue) == 2
    assert queue.ahead(call("a")).calls == 2
    assert drain(queue) == [calls[0], calls[2]]


waiting_calls = st.lists(
    st.tuples(
        st.sampled_from("abcd"),  # organisation
        st.sampled_from("xyz"),  # user
        st.sampled_from([1.0, 2.0, 4.0]),  # organisation weight
        st.sampled_from([1.0, 2.0]),  # user weight
        st.sampled_from([0, 0, 1]),  # priority
        st.booleans(),  # dispatch the head before this call joins
    ),
    max_size=40,
)


@settings(derandomize=True)  # the same examples every run
@given(waiting_calls, st.sampled_from("abce"), st.sampled_from("xyw"), st.sampled_from([0, 1]))
def test_the_calls_predicted_ahead_of_a_call_are_those_dispatched_before_it(
    arrivals: list[tuple[str, str, float, float, int, bool]], org: str, user: str, priority: int
) -> None:
    # Calls alike in cost, each organisation and user with one weight: the prediction is exact.
    queue = FairQueue()
    weights = {name: weight for name, _, weight, _, _, _ in arrivals}
    user_weights = {(o, u): weight for o, u, _, weight, _, _ in arrivals}
    for name, member, _, _, level, dispatch in arrivals:
        if dispatch and (head := queue.peek()) is not None:
            queue.pop(head)
        queue.enqueue(
            call(
                name,
                member,
                org_weight=weights[name],
                user_weight=user_weights[(name, member)],
                priority=level,
            )
        )
    newcomer = call(
        org,
        user,
        org_weight=weights.get(org, 1.0),
        user_weight=user_weights.get((org, user), 1.0),
        priority=priority,
    )
    predicted = queue.ahead(newcomer)
    queue.enqueue(newcomer)
    order = drain(queue)
    assert predicted.calls == order.index(newcomer)


queue_events = st.lists(
    st.tuples(
        st.sampled_from("abcd"),  # organisation
        st.sampled_from("xyz"),  # user
        st.sampled_from([1.0, 2.0, 4.0]),  # organisation weight
        st.sampled_from([1.0, 2.0]),  # user weight
        st.sampled_from([0, 0, 1]),  # priority
        # before this call joins: the head is dispatched, a call of the same user starts outside the queue
        # (a kept turn), or a waiting call chosen by the index leaves
        st.sampled_from(["none", "dispatch", "outside", "leave"]),
        st.integers(min_value=0, max_value=100),
    ),
    max_size=40,
)


@settings(derandomize=True, max_examples=40)
@given(queue_events, st.sampled_from("abce"), st.sampled_from("xyw"), st.sampled_from([0, 1]))
def test_predictions_stay_exact_as_calls_leave_and_start_outside_the_queue(
    events: list[tuple[str, str, float, float, int, str, int]], org: str, user: str, priority: int
) -> None:
    queue = FairQueue()
    weights = {name: weight for name, _, weight, *_ in events}
    user_weights = {(o, u): weight for o, u, _, weight, *_ in events}
    waiting: list[Ticket] = []
    for name, member, _, _, level, event, index in events:
        ticket = call(
            name, member, org_weight=weights[name], user_weight=user_weights[(name, member)], priority=level
        )
        if event == "dispatch" and (head := queue.peek()) is not None:
            queue.pop(head)
            waiting.remove(head)
        elif event == "outside":
            queue.charge(ticket)
        elif event == "leave" and waiting:
            queue.remove(leaving := waiting[index % len(waiting)])
            waiting.remove(leaving)
        queue.enqueue(ticket)
        waiting.append(ticket)
    newcomer = call(
        org,
        user,
        org_weight=weights.get(org, 1.0),
        user_weight=user_weights.get((org, user), 1.0),
        priority=priority,
    )
    predicted = queue.ahead(newcomer)
    queue.enqueue(newcomer)
    assert predicted.calls == drain(queue).index(newcomer)
