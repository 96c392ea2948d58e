"""The admission queue on a loop whose clock the tests move (``virtual_time``), with in-memory buckets on
the same clock: fast limits, small numbers, exact times, no sleeping."""

from __future__ import annotations

import asyncio
import re
import statistics

import pytest

from claudegate.errors import RateLimitError
from claudegate.flow.admission import AdmissionQueue, ReplyStart, Ticket
from claudegate.flow.limits import LaneLimits
from claudegate.flow.state import BucketSpec, FlowState, MemoryState
from tests.unit.virtual_time import now, virtual_time


def memory() -> MemoryState:
    """Buckets on the loop's clock."""
    return MemoryState(asyncio.get_running_loop().time)


def lane(requests_per_second: float, capacity: float = 1.0) -> LaneLimits:
    big = BucketSpec("in", 1e9, 1e9)
    return LaneLimits(
        "test:lane", BucketSpec("req", capacity, requests_per_second), big, BucketSpec("out", 1e9, 1e9)
    )


def ended(queue: AdmissionQueue, seconds: float, first_byte: float | None, *, streamed: bool = False) -> None:
    """Tell the queue that a call of its lane (not one it started) ended after ``seconds``."""
    queue.finished(Ticket("a", "u", 0, 0, deadline=0.0, streamed=streamed), seconds, first_byte)


def timed_queue(
    limits: LaneLimits, state: FlowState, *, max_concurrency: int, headroom_s: float = 0.0
) -> AdmissionQueue:
    """A lane that has timed a reply, which began at once: waits are promised with nothing counted for the
    reply. (Before any reply is timed, a call that must wait is promised a start only with a long deadline:
    see the tests of that below.)"""
    queue = AdmissionQueue(limits, state, max_concurrency=max_concurrency, headroom_s=headroom_s)
    ended(queue, 0.0, 0.0)
    ended(queue, 0.0, 0.0, streamed=True)
    return queue


def ticket(org: str, user: str = "u", *, deadline_in: float = 30.0, priority: int = 0) -> Ticket:
    return Ticket(org, user, 10, 10, deadline=now() + deadline_in, priority=priority)


async def admit_all(queue: AdmissionQueue, tickets: list[Ticket], order: list[str]) -> None:
    async def one(t: Ticket) -> None:
        await queue.admit(t)
        order.append(t.org + "/" + t.user)
        queue.finished(t, 0.01, None)

    await asyncio.gather(*(one(t) for t in tickets))


@virtual_time
async def test_a_call_with_capacity_starts_at_once() -> None:
    queue = timed_queue(lane(10), memory(), max_concurrency=4)
    started = now()
    await queue.admit(ticket("a"))
    assert now() - started == 0
    assert queue.in_flight == 1


@virtual_time
async def test_a_call_that_cannot_start_in_time_is_refused_at_once_with_an_honest_wait() -> None:
    queue = timed_queue(lane(10), memory(), max_concurrency=100)  # 10 calls a second
    waiting = [asyncio.create_task(queue.admit(ticket("a"))) for _ in range(10)]
    await asyncio.sleep(0)
    started = now()
    with pytest.raises(RateLimitError) as refused:
        await queue.admit(ticket("a", deadline_in=0.3))  # its own 10 calls ahead need ~1 s
    assert now() - started < 0.05  # refused at once, not after waiting
    # retry-after is the prediction itself (sent whole-second rounded up, and exact as retry-after-ms)
    assert refused.value.retry_after == pytest.approx(1.0, abs=0.15)
    assert (
        "predicted wait of 1.0 s" in refused.value.message
        or "predicted wait of 0.9 s" in refused.value.message
    )
    await asyncio.gather(*waiting)


@virtual_time
async def test_predicted_wait_is_told_to_the_caller_and_comes_true() -> None:
    queue = timed_queue(lane(20), memory(), max_concurrency=100)
    for _ in range(3):
        await queue.admit(ticket("a"))  # the bucket holds one request: these leave it empty
    heard: list[tuple[int, float]] = []
    late = ticket("b")
    late.on_queued = lambda position, wait: heard.append((position, wait))
    started = now()
    await queue.admit(late)
    waited = now() - started
    assert len(heard) == 1
    position, predicted = heard[0]
    assert position == 1
    assert 0 < predicted <= 0.05 + 1e-6  # one request refills in 1/20 s
    assert predicted == pytest.approx(waited, abs=0.03)


@virtual_time
async def test_organisations_share_the_lane_fairly() -> None:
    queue = timed_queue(lane(50), memory(), max_concurrency=100)
    order: list[str] = []
    flood = [ticket("big") for _ in range(12)]
    few = [ticket("small") for _ in range(3)]
    task = asyncio.create_task(admit_all(queue, flood, order))
    await asyncio.sleep(0.01)
    await admit_all(queue, few, order)
    await task
    # The small organisation arrived after twelve calls of the big one, yet its three calls do not wait
    # behind all twelve: they alternate with the big organisation's.
    last_small = max(i for i, who in enumerate(order) if who.startswith("small"))
    assert last_small < 9


@virtual_time
async def test_users_share_their_organisations_part() -> None:
    queue = timed_queue(lane(50), memory(), max_concurrency=100)
    order: list[str] = []
    tickets = [ticket("org", "alice") for _ in range(8)] + [ticket("org", "bob") for _ in range(2)]
    await admit_all(queue, tickets, order)
    assert order.index("org/bob") < 4


@virtual_time
async def test_higher_priority_goes_first() -> None:
    queue = timed_queue(lane(50), memory(), max_concurrency=100)
    order: list[str] = []
    low = [ticket("low") for _ in range(6)]
    task = asyncio.create_task(admit_all(queue, low, order))
    await asyncio.sleep(0.005)
    await admit_all(queue, [ticket("high", priority=5)], order)
    await task
    assert order.index("high/u") <= 2


@virtual_time
async def test_concurrency_is_bounded() -> None:
    queue = timed_queue(lane(1000, capacity=100), memory(), max_concurrency=2)
    running = 0
    peak = 0

    async def call() -> None:
        nonlocal running, peak
        admitted = ticket("a")
        await queue.admit(admitted)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        queue.finished(admitted, 0.02, 0.01)

    await asyncio.gather(*(call() for _ in range(8)))
    assert peak == 2


@virtual_time
async def test_calls_queued_by_another_process_sharing_the_buckets_are_counted_in_predictions() -> None:
    state = memory()  # shared, as Redis is between gateway processes
    here, there = (timed_queue(lane(10), state, max_concurrency=100) for _ in range(2))  # 10 calls a second
    await there.admit(ticket("a"))  # the bucket holds one request: now it is empty
    waiting_there = [asyncio.create_task(there.admit(ticket("a"))) for _ in range(6)]
    await asyncio.sleep(0)
    began = now()
    heard: list[float] = []
    started: list[float] = []

    async def one() -> None:
        call = ticket("a")
        call.on_queued = lambda _position, wait: heard.append(wait)
        await here.admit(call)
        started.append(now() - began)

    waiting_here = [asyncio.create_task(one()) for _ in range(3)]
    await asyncio.sleep(0)
    # The two processes' calls take turns: the third call here starts after five or six calls, not three.
    asked = now()
    with pytest.raises(RateLimitError) as refused:
        await here.admit(ticket("a", deadline_in=0.45))  # the fourth here: 0.4 s alone, 0.75 s shared
    assert now() - asked == 0
    assert refused.value.retry_after == pytest.approx(0.75, abs=0.05)
    await asyncio.gather(*waiting_here, *waiting_there)
    assert heard == [pytest.approx(wait, abs=0.02) for wait in (0.15, 0.35, 0.55)]  # alone: 0.1, 0.2, 0.3
    assert started == [pytest.approx(wait, abs=0.08) for wait in heard]


@virtual_time
async def test_a_caller_that_gives_up_leaves_the_queue() -> None:
    queue = timed_queue(lane(5), memory(), max_concurrency=100)
    await queue.admit(ticket("a"))
    waiting = asyncio.create_task(queue.admit(ticket("a")))
    await asyncio.sleep(0.01)
    assert queue.waiting == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert queue.waiting == 0


def placed(org: str, place: str, *, deadline_in: float) -> Ticket:
    """A ticket that can be known again when it comes back (as the pipeline's key and body do)."""
    return Ticket(org, "u", 10, 10, deadline=now() + deadline_in, place=lambda: place)


@virtual_time
async def test_a_refused_call_that_comes_back_at_its_retry_after_finds_its_turn_kept() -> None:
    queue = timed_queue(lane(10), memory(), max_concurrency=100)  # 10 calls a second
    ahead = [asyncio.create_task(queue.admit(ticket("a", deadline_in=30))) for _ in range(10)]
    await asyncio.sleep(0)
    refused_at = now()
    with pytest.raises(RateLimitError) as refused:
        await queue.admit(placed("a", "call-x", deadline_in=0.3))
    wait = refused.value.retry_after
    assert wait == pytest.approx(1.0, abs=0.15)
    assert queue.holds == 1
    # Ten newer calls arrive while it is away; without a kept turn they would all go before it.
    behind = [asyncio.create_task(queue.admit(ticket("a", deadline_in=30))) for _ in range(10)]
    await asyncio.sleep(wait - (now() - refused_at))
    await queue.admit(placed("a", "call-x", deadline_in=0.3))  # admitted, not refused a second time
    started_after = now() - refused_at
    assert started_after == pytest.approx(wait, rel=0.2)
    assert queue.holds == 0
    await asyncio.gather(*ahead, *behind)


@virtual_time
async def test_a_kept_turn_holds_its_tokens_for_its_caller_until_it_lapses_soon_after_its_time() -> None:
    queue = timed_queue(lane(10), memory(), max_concurrency=100)  # 10 calls a second
    first = ticket("a")
    await queue.admit(first)  # the bucket holds one request: now it is empty
    queue.finished(first, 0.0, None)
    with pytest.raises(RateLimitError) as refused:
        await queue.admit(placed("a", "absent", deadline_in=0.05))
    # Its turn comes in 0.1 s; it is kept at the whole second that retry-after states (and retry-after-ms).
    assert refused.value.retry_after == 1.0
    assert queue.holds == 1
    # A newer call takes the request that refills first (0.1 s): the bucket refills another for the kept
    # turn by its time. It is told so.
    heard: list[float] = []
    newer = ticket("b")
    newer.on_queued = lambda _position, wait: heard.append(wait)
    started = now()
    await queue.admit(newer)
    waited = now() - started
    assert waited == pytest.approx(0.1)
    assert heard == [pytest.approx(waited)]
    queue.finished(newer, 0.0, None)
    assert queue.in_flight == 0
    await asyncio.sleep(started + 0.95 - now())
    assert queue.in_flight == 1  # shortly before its time, the turn took its request and a slot
    # The caller does not come back: shortly after its time (0.25 s and a fiftieth of the wait), the turn
    # lapses and gives back its request and its slot.
    await asyncio.sleep(started + 1.0 + 0.25 + 0.02 - now() - 0.01)
    assert queue.holds == 1
    await asyncio.sleep(0.02)
    assert queue.holds == 0
    assert queue.in_flight == 0
    # Had it come back now, it would be an ordinary new call, with no turn of its own.
    await queue.admit(placed("a", "absent", deadline_in=30))
    assert queue.holds == 0


@virtual_time
async def test_a_caller_back_at_its_retry_after_starts_at_once_though_newer_calls_wanted_its_tokens() -> None:
    state = memory()
    big = BucketSpec("req", 1e9, 1e9)
    output = BucketSpec("out", 100, 100)  # 100 output tokens a second, at most 100 at once
    queue = timed_queue(LaneLimits("t", big, big, output), state, max_concurrency=100)

    def call(place: str, tokens: float, deadline_in: float) -> Ticket:
        return Ticket("a", "u", 0, tokens, deadline=now() + deadline_in, place=lambda: place)

    await queue.admit(call("first", 100, 30))  # the bucket is empty now
    refused_at = now()
    with pytest.raises(RateLimitError) as refused:
        await queue.admit(call("x", 100, 0.2))  # its 100 tokens refill in 1 s
    assert refused.value.retry_after == 1.0
    # While it is away, newer calls keep asking for the tokens that refill for it; each could start before
    # it comes back, but only by taking what it will need then, so none does.
    newer: list[asyncio.Task[None]] = []
    for number in range(9):
        await asyncio.sleep(0.1)
        newer.append(asyncio.create_task(queue.admit(call(f"newer-{number}", 30, 0.3))))
    await asyncio.sleep(0)
    assert all(task.done() and isinstance(task.exception(), RateLimitError) for task in newer)
    await asyncio.sleep(max(0.0, refused_at + 1.0 - now()))
    back = now()
    await queue.admit(call("x", 100, 0.2))  # back on time, with a deadline that allows no wait
    assert now() - back == 0
    assert queue.holds == 9  # the newer calls' own turns, kept for them in turn


@virtual_time
async def test_a_queued_call_that_leaves_a_kept_turn_its_tokens_is_predicted_to_go_first() -> None:
    state = memory()
    big = BucketSpec("req", 1e9, 1e9)
    output = BucketSpec("out", 1000, 100)  # 100 output tokens a second
    # Each call starts only with 0.5 s of refill (50 tokens) in reserve beside what it takes.
    queue = timed_queue(LaneLimits("t", big, big, output), state, max_concurrency=100, headroom_s=0.5)
    await state.charge(output, 1000)  # empty
    refused_at = now()
    with pytest.raises(RateLimitError) as refused:
        await queue.admit(Ticket("a", "u", 0, 100, deadline=now() + 0.2, place=lambda: "x"))
    assert refused.value.retry_after == 2.0  # 150 tokens are there in 1.5 s; its turn is kept at 2 s
    # A newer call of 40 tokens can start in 0.9 s (with its reserve) and still leave the kept turn its 150
    # tokens at 2 s (200 refilled by then, 40 taken): it goes first, and is told so, not the turn's time.
    heard: list[float] = []
    newer = Ticket("b", "u", 0, 40, deadline=now() + 30)
    newer.on_queued = lambda _position, wait: heard.append(wait)
    await queue.admit(newer)
    assert now() - refused_at == pytest.approx(0.9, abs=1e-3)
    assert heard == [pytest.approx(0.9)]
    await asyncio.sleep(refused_at + 2.0 - now())
    back = now()
    await queue.admit(Ticket("a", "u", 0, 100, deadline=now() + 0.2, place=lambda: "x"))
    assert now() == back  # back on time: its turn was kept, with its tokens


def output_lane(state: MemoryState, *, calls_last_s: float) -> tuple[BucketSpec, AdmissionQueue]:
    """A lane bound by output alone (1,000 tokens a second, 200 at once), which has learnt how long its calls
    take; and its output bucket."""
    unlimited = BucketSpec("req", 1e9, 1e9)
    output = BucketSpec("out", 200, 1000)
    queue = timed_queue(LaneLimits("t", unlimited, unlimited, output), state, max_concurrency=100)
    for _ in range(30):
        ended(queue, calls_last_s, None)
    return output, queue


@virtual_time
async def test_predictions_count_expected_output_and_come_true_when_reservations_are_settled() -> None:
    state = memory()
    output, queue = output_lane(state, calls_last_s=0.01)  # calls are over in a moment

    async def call() -> None:
        # Each call reserves 125 output tokens, produces the 100 expected, and settles at once.
        admitted = Ticket("a", "u", 0, 125, deadline=now() + 30, expected_output_tokens=100)
        await queue.admit(admitted)
        await state.charge(output, -25)
        queue.finished(admitted, 0.01, None)

    ahead = [asyncio.create_task(call()) for _ in range(8)]
    await asyncio.sleep(0)
    heard: list[float] = []
    last = Ticket("a", "u", 0, 125, deadline=now() + 30, expected_output_tokens=100)
    last.on_queued = lambda _position, wait: heard.append(wait)
    started = now()
    await queue.admit(last)
    waited = now() - started
    await asyncio.gather(*ahead)
    assert waited == pytest.approx(heard[0], rel=0.1)  # counting the reservations would say 25% more


@virtual_time
async def test_a_start_predicted_before_calls_ahead_settle_counts_their_reservations() -> None:
    state = memory()
    _, queue = output_lane(state, calls_last_s=10.0)

    def call() -> Ticket:
        # Reserves 125 output tokens, expected to produce 100: it gives 25 back when it settles, 10 s on.
        return Ticket("a", "u", 0, 125, deadline=now() + 30, expected_output_tokens=100)

    ahead = [asyncio.create_task(queue.admit(call())) for _ in range(4)]
    await asyncio.sleep(0)
    heard: list[float] = []
    last = call()
    last.on_queued = lambda _position, wait: heard.append(wait)
    started = now()
    await queue.admit(last)
    waited = now() - started
    await asyncio.gather(*ahead)
    # The four ahead take 500 and give back nothing within the wait: (625 - 200) / 1,000 = 0.425 s, not the
    # 0.325 s that counting what they are expected to produce would say.
    assert waited == pytest.approx(0.425, abs=0.03)
    assert heard[0] == pytest.approx(waited, rel=0.1)


def test_a_stale_reply_start_estimate_fades_so_refusals_do_not_last_for_ever() -> None:
    estimate = ReplyStart()
    estimate.observe(12.0, now=100.0)  # one very slow reply, past a 10 s deadline
    assert estimate.bound(100.0) >= 12.0
    assert estimate.bound(129.0) == estimate.bound(100.0)  # recent: kept as it is
    assert estimate.bound(30 + 100 + 60) == pytest.approx(estimate.bound(100.0) / 2)
    assert estimate.bound(30 + 100 + 240) < 2.0


def test_the_reply_start_estimate_is_a_high_quantile_that_stays_below_the_longest_reply() -> None:
    # Replies whose length varies: most begin within 2-4 s, a few take up to 9 s. The mean plus three mean
    # deviations would put the estimate beyond the slowest reply seen and refuse every call with a 10 s
    # deadline; a high quantile of recent replies covers all but the rarest.
    estimate = ReplyStart()
    durations = [2.0 + (i % 5) * 0.5 for i in range(90)] + [9.0, 8.5, 8.0, 7.5, 7.0, 6.5, 6.0, 5.5, 5.0, 4.5]
    for number, seconds in enumerate(durations):
        estimate.observe(seconds, now=float(number))
    bound = estimate.bound(float(len(durations)))
    assert 7.0 <= bound <= 9.0
    covered = sum(seconds <= bound for seconds in durations) / len(durations)
    assert covered >= 0.97


@virtual_time
async def test_a_turn_is_not_kept_before_an_earlier_callers_turn_if_it_would_leave_that_short() -> None:
    big = BucketSpec("req", 1e9, 1e9)
    output = BucketSpec("out", 1000, 100)  # 100 output tokens a second
    queue = timed_queue(LaneLimits("t", big, big, output), memory(), max_concurrency=100)

    def call(place: str, tokens: float, deadline_in: float) -> Ticket:
        return Ticket("a", "u", 0, tokens, deadline=now() + deadline_in, place=lambda: place)

    await queue.admit(Ticket("a", "u", 0, 1000, deadline=now() + 30))  # the bucket is empty now
    refused_at = now()
    with pytest.raises(RateLimitError) as first:
        await queue.admit(call("first", 190, 0.05))
    assert first.value.retry_after == 2.0  # 190 tokens in 1.9 s
    with pytest.raises(RateLimitError) as second:
        await queue.admit(call("second", 40, 0.05))
    # 40 tokens are there in 0.4 s, but a turn at 1 s would leave the first caller 160 of its 190 at 2 s:
    # the second turn is kept after the first (230 tokens in 2.3 s).
    assert second.value.retry_after == 3.0
    await asyncio.sleep(max(0.0, refused_at + 2.0 - now()))
    back = now()
    await queue.admit(call("first", 190, 30))  # the first caller, back on time, starts at once
    assert now() - back == 0
    await asyncio.sleep(1.0)
    back = now()
    await queue.admit(call("second", 40, 0.05))  # and so does the second
    assert now() == back


@virtual_time
async def test_a_refused_call_back_long_before_its_turn_queues_behind_those_who_came_before_it() -> None:
    queue = timed_queue(lane(10), memory(), max_concurrency=100)  # 10 calls a second
    ahead = [asyncio.create_task(queue.admit(ticket("a", deadline_in=30))) for _ in range(10)]
    await asyncio.sleep(0)
    with pytest.raises(RateLimitError) as refused:
        await queue.admit(placed("a", "eager", deadline_in=0.3))
    assert refused.value.retry_after == pytest.approx(1.0, abs=0.15)
    behind = asyncio.create_task(queue.admit(ticket("a", deadline_in=30)))
    await asyncio.sleep(0)
    # Back at once, with a deadline that lets it wait: it does not jump the calls queued meanwhile.
    order: list[str] = []
    eager = asyncio.create_task(queue.admit(placed("a", "eager", deadline_in=30)))
    behind.add_done_callback(lambda _: order.append("behind"))
    eager.add_done_callback(lambda _: order.append("eager"))
    await asyncio.gather(*ahead, behind, eager)
    assert order == ["behind", "eager"]


class Settling:
    """Twenty calls in flight that each reserved 10 output tokens and produce none: one settles every
    0.25 s (giving its 10 tokens back), so over five seconds (the call duration the queue assumes) they
    give back 200 tokens, evenly."""

    def __init__(self) -> None:
        self.state = memory()
        big = BucketSpec("req", 1e9, 1e9)
        self.output = BucketSpec("out", 200, 50)  # 50 output tokens a second, at most 200 at once
        self.queue = timed_queue(LaneLimits("t", big, big, self.output), self.state, max_concurrency=100)

    def call(self, place: str, tokens: float, deadline_in: float) -> Ticket:
        return Ticket(
            "a",
            "u",
            0,
            tokens,
            deadline=now() + deadline_in,
            expected_output_tokens=0,
            place=lambda: place,
        )

    async def start(self) -> asyncio.Task[None]:
        calls = [self.call(f"in-flight-{number}", 10, 30) for number in range(20)]
        for call in calls:
            await self.queue.admit(call)  # the bucket is empty once all have started
        started = now()

        async def settle() -> None:
            for number, call in enumerate(calls):
                await asyncio.sleep(max(0.0, started + 0.25 * (number + 1) - now()))
                await self.state.charge(self.output, -10)
                self.queue.finished(call, 5.0, None)

        return asyncio.create_task(settle())


@virtual_time
async def test_a_short_wait_counts_only_what_calls_in_flight_have_given_back_by_then() -> None:
    lane = Settling()
    settling = await lane.start()
    # 100 tokens: 50 a second of refill and 40 a second given back, about 1.1 s. Counting all 200 that
    # calls in flight will give back as back now would predict no wait at all.
    heard: list[float] = []
    queued = lane.call("queued", 100, 30)
    queued.on_queued = lambda _position, wait: heard.append(wait)
    started = now()
    await lane.queue.admit(queued)
    waited = now() - started
    assert waited == pytest.approx(1.15, abs=0.1)  # settling in steps of 10 tokens: 1.2 s
    assert heard == [pytest.approx(waited, rel=0.15)]
    # A call that cannot wait that long is refused at once, not after waiting in the queue.
    started = now()
    with pytest.raises(RateLimitError):
        await lane.queue.admit(lane.call("hurried", 100, 0.5))
    assert now() - started == 0
    await settling


@virtual_time
async def test_a_caller_back_at_its_retry_after_finds_what_calls_in_flight_gave_back_by_then() -> None:
    lane = Settling()
    settling = await lane.start()
    refused_at = now()
    with pytest.raises(RateLimitError) as refused:
        await lane.queue.admit(lane.call("x", 150, 0.3))
    # 150 tokens come in about 1.7 s (refill and give-back together), told as 2 s; counting the whole
    # give-back as back now would tell it 1 s, when only 90 tokens are there.
    assert refused.value.retry_after == 2.0
    await asyncio.sleep(max(0.0, refused_at + 2.0 - now()))
    back = now()
    await lane.queue.admit(lane.call("x", 150, 0.3))  # back on time: it starts at once
    assert now() - back == 0
    await settling


class LearntLane:
    """A lane bound by output (100 tokens a second, at most 2,000 at once), which
    has learnt its replies: half end after 1 s with 20 tokens, half after 5 s with 400. Each call reserves
    250 output tokens, a little above the 210 the replies average."""

    def __init__(self) -> None:
        self.state = memory()
        big = BucketSpec("req", 1e9, 1e9)
        self.output = BucketSpec("out", 2000, 100)
        self.queue = AdmissionQueue(LaneLimits("t", big, big, self.output), self.state, max_concurrency=100)
        ended(self.queue, 0.0, 0.0)

    def call(self, place: str, tokens: float = 250, deadline_in: float = 30) -> Ticket:
        return Ticket(
            "a",
            "u",
            0,
            tokens,
            deadline=now() + deadline_in,
            expected_output_tokens=210,
            place=lambda: place,
        )

    async def settle(self, admitted: Ticket, seconds: float, produced: int) -> None:
        """``seconds`` later, the call ends with ``produced`` tokens, settled as the pipeline does."""
        await asyncio.sleep(seconds)
        await self.state.charge(self.output, produced - admitted.output_tokens)
        self.queue.finished(admitted, seconds, 0.0, output_tokens=produced)

    async def learn(self) -> None:
        for seconds, produced in [(1.0, 20), (5.0, 400)] * 10:
            admitted = self.call("earlier")
            await self.queue.admit(admitted)
            await self.settle(admitted, seconds, produced)
        await asyncio.sleep(30.0)  # the bucket is full again

    async def start(self, calls: int, *, leaving: float) -> list[Ticket]:
        """Start calls at once, and leave the output bucket at ``leaving``."""
        started = [self.call(f"in-flight-{number}") for number in range(calls)]
        for admitted in started:
            await self.queue.admit(admitted)
        level = (await self.state.levels([self.output]))[0]
        await self.state.charge(self.output, level - leaving)
        return started


@virtual_time
async def test_calls_in_flight_longer_than_most_replies_are_predicted_to_overrun_their_reservations() -> None:
    lane = LearntLane()
    await lane.learn()
    in_flight = await lane.start(4, leaving=1000)
    await asyncio.sleep(2.0)  # all four have outlived the short replies: they are long ones, owing 150 each

    with pytest.raises(RateLimitError) as refused:
        await lane.queue.admit(lane.call("big", 1850, deadline_in=1))
    # 650 more tokens take 6.5 s of refill, and 600 more when the four settle: 12.5 s, told 13 s. Counting
    # the average surplus for them (160 tokens back) would tell it 5 s, when 1,100 tokens would be there.
    assert refused.value.retry_after == 13.0
    await asyncio.sleep(3.0)
    for admitted in in_flight:
        await lane.settle(admitted, 0.0, 400)
    await asyncio.sleep(10.0)
    back = now()
    await lane.queue.admit(lane.call("big", 1850))  # back at its retry-after: it starts at once
    assert now() == back


@virtual_time
async def test_a_refused_caller_is_told_a_time_allowing_for_long_replies_and_newer_calls_leave_it() -> None:
    lane = LearntLane()
    await lane.learn()
    in_flight = await lane.start(4, leaving=300)  # each may give back 230 after 1 s, or owe 150 after 5 s

    with pytest.raises(RateLimitError) as refused:
        await lane.queue.admit(lane.call("big", 600, deadline_in=0.5))
    # On average the four give back 160, and 600 tokens would be there in under 2 s. But if three of the
    # four are long (as likely as not), 150 tokens are missing when they settle at 5 s, until 6.7 s.
    assert refused.value.retry_after == 7.0
    # A newer call that could start now would leave the turn 300 short if they were: it waits.
    newer = asyncio.ensure_future(lane.queue.admit(lane.call("newer", 300)))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(newer), 0.1)
    assert not newer.done()
    await lane.settle(in_flight[0], 0.9, 20)  # 1 s after the refusal
    await asyncio.sleep(4.0)
    for admitted in in_flight[1:]:
        await lane.settle(admitted, 0.0, 400)
    await asyncio.sleep(2.0)
    back = now()
    await lane.queue.admit(lane.call("big", 600))  # back on time: it starts at once
    assert now() == back
    newer.cancel()


@virtual_time
async def test_a_call_that_would_start_too_late_if_the_replies_ahead_run_long_is_refused_at_once() -> None:
    lane = LearntLane()
    await lane.learn()
    await lane.start(4, leaving=300)  # each may give back 230 after 1 s, or owe 150 after 5 s
    asked = now()
    with pytest.raises(RateLimitError) as refused:
        # 600 tokens are there in 1 s if the four give back what they are expected to, 1.3 s if two of
        # them are long: the call is not queued to be refused after waiting, but refused now.
        await lane.queue.admit(lane.call("tight", 600, deadline_in=1.2))
    assert now() == asked
    assert "a predicted wait of 1.0 s (up to 1.3 s if the replies ahead run long)" in refused.value.message


@virtual_time
async def test_a_call_that_would_miss_its_deadline_if_a_kept_turn_is_claimed_is_refused_at_once() -> None:
    big = BucketSpec("req", 1e9, 1e9)
    output = BucketSpec("out", 100, 100)  # 100 output tokens a second, at most 100 at once
    queue = timed_queue(LaneLimits("t", big, big, output), memory(), max_concurrency=100)

    def call(place: str, tokens: float, deadline_in: float) -> Ticket:
        return Ticket("a", "u", 0, tokens, deadline=now() + deadline_in, place=lambda: place)

    await queue.admit(call("first", 100, 30))  # the bucket is empty now
    refused_at = now()
    with pytest.raises(RateLimitError):
        await queue.admit(call("x", 100, 0.2))  # its turn is kept for it at 1 s
    # Counting the kept turn at the rate callers come back, this call would start just inside its deadline;
    # if the caller does come back and takes its 100 tokens first, it would start 0.5 s later. Queued, it
    # would be refused after waiting; it is refused at once instead.
    asked = now()
    with pytest.raises(RateLimitError):
        await queue.admit(Ticket("a", "u", 0, 100, deadline=now() + 1.75))  # keeps no turn
    assert now() - asked == 0
    # A call whose deadline allows for the kept turn being claimed is queued, and starts in time when it is.
    roomy = asyncio.create_task(queue.admit(call("roomy", 100, 2.4)))
    await asyncio.sleep(max(0.0, refused_at + 1.0 - now()))
    await queue.admit(call("x", 100, 0.2))  # the refused caller, back on time
    await roomy
    assert now() - refused_at == pytest.approx(2.0, abs=0.2)


@virtual_time
async def test_until_a_reply_is_timed_only_a_long_deadline_lets_a_call_wait_for_its_turn() -> None:
    queue = AdmissionQueue(lane(10), memory(), max_concurrency=100)  # 10 calls a second, none timed
    await queue.admit(ticket("a", deadline_in=10))  # starts at once: nothing to promise
    started = now()
    with pytest.raises(RateLimitError) as refused:
        # It would start 0.1 s from now, but its reply could take all of its 10 s: nobody knows yet.
        await queue.admit(ticket("a", deadline_in=10))
    assert now() - started == 0
    assert "No reply from this upstream has been timed yet" in refused.value.message
    assert refused.value.retry_after == pytest.approx(0.1, abs=0.05)

    await queue.admit(ticket("a", deadline_in=120))  # a deadline with room for a long reply waits its turn
    assert now() - started == pytest.approx(0.1, abs=0.05)

    # A JSON reply of at most 420 tokens is assumed to take up to 2 + 420/60 = 9 s: that fits in 10 s,
    # 600 tokens (12 s) does not. A stream's first byte is assumed within 2 s whatever its length.
    short = ticket("a", deadline_in=10)
    short.max_tokens = 420
    await queue.admit(short)
    assert now() - started == pytest.approx(0.2, abs=0.05)
    longer = ticket("a", deadline_in=10)
    longer.max_tokens = 600
    with pytest.raises(RateLimitError):
        await queue.admit(longer)
    streamed = ticket("a", deadline_in=3)
    streamed.streamed = True
    await queue.admit(streamed)
    assert now() - started == pytest.approx(0.3, abs=0.05)

    ended(queue, 1.5, 1.5)  # a reply took 1.5 s: now a wait can be promised against a 10 s deadline
    await queue.admit(ticket("a", deadline_in=10))
    assert now() - started == pytest.approx(0.4, abs=0.05)


def test_a_promised_start_counts_the_reply_estimate_before_it_fades() -> None:
    estimate = ReplyStart()
    estimate.observe(4.0, now=0.0)
    fresh = estimate.bound(0.0)
    # Idle for minutes: calls that start at once are judged on a fading estimate (so that slow replies long
    # ago refuse nothing for ever), but a wait is promised only on what replies were last seen to take.
    assert estimate.bound(300.0) < fresh / 4
    assert estimate.promise(300.0, untimed=60.0) == fresh


@virtual_time
async def test_a_kept_turn_whose_caller_does_not_come_back_gives_its_tokens_back_when_it_lapses() -> None:
    state = memory()
    big = BucketSpec("req", 1e9, 1e9)
    output = BucketSpec("out", 1000, 100)  # 100 output tokens a second
    queue = timed_queue(LaneLimits("t", big, big, output), state, max_concurrency=100)
    await state.charge(output, 1000)  # empty
    with pytest.raises(RateLimitError) as refused:
        await queue.admit(Ticket("a", "u", 0, 300, deadline=now() + 0.5, place=lambda: "absent"))
    assert refused.value.retry_after == 3.0
    await asyncio.sleep(3.01)  # the turn took its 300 tokens at 3 s
    assert (await state.levels([output]))[0] == pytest.approx(1.0)
    await asyncio.sleep(0.25 + 0.02 * 3.0)  # it lapses: its 300 come back, beside 31 refilled
    assert queue.holds == 0
    assert (await state.levels([output]))[0] == pytest.approx(300 + 31 + 1, abs=0.01)


@virtual_time
async def test_refused_callers_of_a_burst_that_come_back_at_their_retry_after_are_admitted_then() -> None:
    queue = timed_queue(lane(10, capacity=5), memory(), max_concurrency=100)  # 10 calls a second, 5 at once
    refused_again: list[str] = []
    late: list[float] = []

    async def caller(name: str, org: str) -> None:
        try:
            await queue.admit(placed(org, name, deadline_in=1.0))
            return
        except RateLimitError as refusal:
            told = refusal.retry_after
        await asyncio.sleep(told)
        back = now()
        try:
            await queue.admit(placed(org, name, deadline_in=1.0))
        except RateLimitError:
            refused_again.append(name)
            return
        late.append((now() - back) / told)

    async def arrivals() -> list[asyncio.Task[None]]:
        # While the refused callers are away, other organisations' calls keep arriving.
        tasks = []
        for number in range(40):
            tasks.append(asyncio.create_task(caller(f"later-{number}", f"org-{number % 3}")))
            await asyncio.sleep(0.1)
        return tasks

    burst = [asyncio.create_task(caller(f"burst-{number}", "burst")) for number in range(60)]
    later = await arrivals()
    await asyncio.gather(*burst, *later)
    # At least 95% of those that came back were admitted then, most of them within a twentieth of the wait
    # they were told (turns kept at the same whole second take their requests one after another).
    came_back = len(late) + len(refused_again)
    assert came_back > 40
    assert len(refused_again) <= 0.05 * came_back
    assert statistics.median(late) < 0.05


def stated_wait(refusal: RateLimitError) -> float:
    """The wait in the queue that a refusal states."""
    match = re.search(r"predicted wait of ([0-9.]+) s", refusal.message)
    assert match is not None, refusal.message
    return float(match.group(1))


@virtual_time
async def test_a_refusal_states_the_wait_a_queued_call_has_though_absent_callers_turns_are_kept() -> None:
    state = memory()
    big = BucketSpec("req", 1e9, 1e9)
    output = BucketSpec("out", 100, 100)  # 100 output tokens a second, at most 100 at once
    queue = timed_queue(LaneLimits("t", big, big, output), state, max_concurrency=100)

    def call(tokens: float, deadline_in: float, place: str | None = None) -> Ticket:
        known = (lambda: place) if place is not None else None
        return Ticket("a", "u", 0, tokens, deadline=now() + deadline_in, place=known)

    await queue.admit(call(100, 30))  # the bucket is empty now
    # Six refused callers, each kept a turn a second after the one before; none of them comes back.
    for number in range(6):
        with pytest.raises(RateLimitError) as kept:
            await queue.admit(call(100, 0.2, place=f"away-{number}"))
        assert kept.value.retry_after == number + 1
    started = now()
    with pytest.raises(RateLimitError) as refused:
        await queue.admit(call(10, 0.05))
    # The same call with a deadline that lets it wait: it waits for the first turn (which cannot spare its
    # 10 tokens) to pass unclaimed, and not for the five after it, whose tokens refill in time for them.
    await queue.admit(call(10, 30))
    waited = now() - started
    assert waited == pytest.approx(1.27, abs=0.01)  # the first turn's time, and its 0.27 s of grace
    assert stated_wait(refused.value) == pytest.approx(waited, abs=0.1)


@pytest.mark.parametrize(
    ("tokens", "deadline_in"),
    [
        (95, 2.1),  # it would start after the first turn's time: it goes after that turn
        (60, 1.75),  # it would start before, but take what the first turn needs then: it goes after it too
    ],
)
@virtual_time
async def test_a_call_goes_between_kept_turns_once_callers_are_seen_to_stay_away(
    tokens: float, deadline_in: float
) -> None:
    state = memory()
    big = BucketSpec("req", 1e9, 1e9)
    output = BucketSpec("out", 300, 100)  # 100 output tokens a second, at most 300 at once
    queue = timed_queue(LaneLimits("t", big, big, output), state, max_concurrency=100)

    def call(tokens: float, deadline_in: float, place: str | None = None) -> Ticket:
        known = (lambda: place) if place is not None else None
        return Ticket("a", "u", 0, tokens, deadline=now() + deadline_in, place=known)

    # Four refused callers that never come back: most callers are seen to stay away.
    await queue.admit(call(300, 30))
    for number in range(4):
        with pytest.raises(RateLimitError):
            await queue.admit(call(100, 0.2, place=f"away-{number}"))
    await asyncio.sleep(30)
    assert queue.holds == 0
    await queue.admit(call(300, 30))  # the bucket is empty again
    began = now()
    with pytest.raises(RateLimitError) as soon:
        await queue.admit(call(100, 0.2, place="soon"))
    with pytest.raises(RateLimitError) as later:
        await queue.admit(call(185, 0.2, place="later"))
    assert (soon.value.retry_after, later.value.retry_after) == (1.0, 3.0)
    for _ in range(2):  # calls that queue and leave: the places of both turns in the order are reached
        leave = asyncio.Event()
        waiting = asyncio.create_task(queue.admit(call(1, 30), leave))
        await asyncio.sleep(0)
        leave.set()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    # The call goes after the first turn (which lapses at 1.27 s and gives back what it took) and before the
    # second, which the refill by then still leaves what it needs: it is admitted, rather than refused as if
    # it had to wait behind both (expecting one more of their callers back than the rate says).
    await queue.admit(call(tokens, deadline_in))
    assert now() - began == pytest.approx(1.27, abs=0.01)
    # The second turn's caller, back at its retry-after, starts then.
    await asyncio.sleep(began + later.value.retry_after - now())
    await queue.admit(call(185, 0.2, place="later"))
    assert now() - began == pytest.approx(3.0, abs=0.01)


@virtual_time
async def test_a_kept_turn_takes_its_tokens_at_its_time_though_the_turn_before_it_is_due_later() -> None:
    state = memory()
    big = BucketSpec("req", 1e9, 1e9)
    output = BucketSpec("out", 300, 100)  # 100 output tokens a second, at most 300 at once
    queue = timed_queue(LaneLimits("t", big, big, output), state, max_concurrency=100)

    def call(tokens: float, deadline_in: float, place: str) -> Ticket:
        return Ticket("a", "u", 0, tokens, deadline=now() + deadline_in, place=lambda: place)

    # Eight refused callers do not come back for their turns: later refusals count a turn ahead of them as
    # little as callers have been seen to come back for theirs.
    for number in range(8):
        await state.charge(output, (await state.levels([output]))[0])  # empty
        with pytest.raises(RateLimitError) as kept:
            await queue.admit(call(100, 0.2, place=f"away-{number}"))
        await asyncio.sleep(kept.value.retry_after + 0.5)  # past its time and its grace: it lapsed
    assert queue.holds == 0
    await state.charge(output, (await state.levels([output]))[0])  # empty
    with pytest.raises(RateLimitError) as big_refused:
        await queue.admit(call(250, 0.2, place="big"))
    assert big_refused.value.retry_after == 3.0  # 250 tokens refill in 2.5 s
    refused_at = now()
    with pytest.raises(RateLimitError) as small_refused:
        await queue.admit(call(60, 0.2, place="small"))
    # Kept after the big call's turn, but told to come back first: the big caller is unlikely to be back.
    assert small_refused.value.retry_after == 1.0
    # A newer call that can wait queues meanwhile, and would take the tokens as they refill.
    newer = asyncio.create_task(queue.admit(call(95, 30, place="newer")))
    await asyncio.sleep(refused_at + 0.95 - now())
    assert not newer.done()
    assert queue.in_flight == 1  # shortly before its time, the small turn took its tokens and a slot
    assert (await state.levels([output]))[0] < 60
    await asyncio.sleep(refused_at + 1.0 - now())
    back = now()
    await queue.admit(call(60, 0.2, place="small"))
    assert now() == back  # it starts at once on what its turn took
    await newer
