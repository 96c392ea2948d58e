"""A process's allotments of shared buckets: spent locally while they last, never after they expire, given
back when unused, and every settlement reported once (the bookkeeping behind ``RedisState``)."""

from __future__ import annotations

import asyncio

from claudegate.flow.allotment import Allotments
from claudegate.flow.state import BucketSpec
from tests.unit.virtual_time import now, virtual_time

REQUESTS = BucketSpec("lane:requests", capacity=6000, rate=100)
TOKENS = BucketSpec("lane:tokens", capacity=600_000, rate=10_000)


@virtual_time
async def test_calls_are_admitted_from_the_allotment_until_it_runs_out() -> None:
    allotments = Allotments(lease_s=1.0)
    allotments.granted(REQUESTS, 3, now())
    allotments.granted(TOKENS, 250, now())
    call = [(REQUESTS, 1.0), (TOKENS, 100.0)]
    assert allotments.take(call, now())
    assert allotments.take(call, now())
    assert not allotments.take(call, now())  # 50 tokens left: the call must ask the shared bucket
    assert allotments.held(REQUESTS.key, now()) == 1  # and nothing was spent by the refused take
    assert allotments.held(TOKENS.key, now()) == 50
    (requests, tokens) = sorted(allotments.reports(now()), key=lambda report: report.spec.key)
    assert (requests.used, tokens.used) == (2, 200)  # what was spent is reported, once
    assert allotments.reports(now()) == []


@virtual_time
async def test_an_expired_allotment_is_never_spent_and_is_given_back() -> None:
    allotments = Allotments(lease_s=1.0)
    allotments.granted(REQUESTS, 5, now())
    await asyncio.sleep(1.0)
    assert not allotments.take([(REQUESTS, 1.0)], now())
    (report,) = allotments.reports(now())
    assert report.give == 5
    assert report.used == 0
    assert not allotments.busy


@virtual_time
async def test_a_take_that_fails_upstream_of_the_allotment_spends_nothing() -> None:
    allotments = Allotments()
    allotments.granted(TOKENS, 60, now())
    call = [(REQUESTS, 1.0), (TOKENS, 100.0)]
    missing = allotments.spend_what_is_held(call, now())
    assert missing == [1.0, 40.0]  # the allotment covers 60 of the tokens
    assert allotments.held(TOKENS.key, now()) == 0  # meanwhile, no other call can spend them
    allotments.restore(call, missing)  # the shared bucket had not the rest
    assert allotments.held(TOKENS.key, now()) == 60
    missing = allotments.spend_what_is_held(call, now())
    allotments.spent(call, missing)  # this time it had
    (report,) = allotments.reports(now())
    assert report.spec == TOKENS
    assert report.used == 60


@virtual_time
async def test_debts_are_paid_from_the_allotment_and_refunds_are_batched() -> None:
    allotments = Allotments()
    allotments.granted(TOKENS, 500, now())
    allotments.charge(TOKENS, 200, now())  # the reply was longer than reserved: paid from what is held
    assert allotments.held(TOKENS.key, now()) == 300
    allotments.charge(TOKENS, 1000, now())  # more than is held: owed to the shared bucket
    allotments.charge(TOKENS, -150, now())  # a refund nets against it
    allotments.observe(TOKENS, 9000)
    allotments.observe(TOKENS, 7000)  # the upstream's lowest report counts
    assert allotments.pending(TOKENS.key) == 850
    (report,) = allotments.reports(now(), keys=[TOKENS.key])
    assert (report.used, report.charge, report.observed) == (200, 850, 7000)
    assert allotments.pending(TOKENS.key) == 0


@virtual_time
async def test_reports_that_could_not_be_sent_go_with_the_next_batch() -> None:
    allotments = Allotments()
    allotments.charge(TOKENS, 100, now())
    allotments.observe(TOKENS, 5000)
    failed = allotments.reports(now())
    allotments.charge(TOKENS, 50, now())
    allotments.unsent(failed)
    (report,) = allotments.reports(now())
    assert report.charge == 150
    assert report.observed == 5000


@virtual_time
async def test_stopping_gives_back_every_allotment_even_unexpired() -> None:
    allotments = Allotments(lease_s=60)
    allotments.granted(REQUESTS, 7, now())
    allotments.granted(TOKENS, 900, now())
    assert allotments.reports(now()) == []  # nothing to say yet: the allotments are still good
    gives = {report.spec.key: report.give for report in allotments.reports(now(), everything=True)}
    assert gives == {REQUESTS.key: 7, TOKENS.key: 900}


def test_an_allotment_is_a_slice_of_refill_and_never_much_of_the_bucket() -> None:
    allotments = Allotments(slice_s=0.25)
    assert allotments.want(REQUESTS) == 25  # a quarter second of 100 a second
    small = BucketSpec("tiny", capacity=50, rate=1000)
    assert allotments.want(small) == 5  # a tenth of the bucket
