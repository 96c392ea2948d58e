"""Dispatch under a lease, on the virtual-clock loop, with scripted upstream replies (the HTTP client is the
only stand-in): retries go back through the lane but keep the call's one budget and tenant reservation, a
failover leaves nothing on the upstream that failed, a fallback model is run on a copy of the call, and a
call cancelled or left mid-reply pays for what it produced and holds nothing afterwards."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping
from typing import cast

import orjson
import pytest

from claudegate.errors import ApiError
from claudegate.flow.retry import RetryPolicy
from claudegate.keys import BudgetCaps, LimitSet
from claudegate.pipeline.attempts import Dispatcher
from claudegate.pipeline.relay import ClientGone, ReplyResult
from claudegate.pipeline.request import CallRequest
from claudegate.pipeline.sink import RawHeaders
from claudegate.upstream.http import HttpClient
from claudegate.wire.tiers import Limits
from tests.unit.lease_support import MODEL, OTHER_MODEL, Gates, Sink, identity
from tests.unit.virtual_time import virtual_time

WHO = identity(key=LimitSet(requests_per_minute=6, tokens_per_minute=600, max_concurrency=1))
BUDGETED = identity(
    key=LimitSet(requests_per_minute=6, tokens_per_minute=600), budget=BudgetCaps(daily_tokens=10**6)
)


class Reply:
    """A scripted upstream reply: a JSON body, or a stream that stops (and waits) after ``events``."""

    def __init__(
        self, status: int, body: bytes = b"", *, events: list[bytes] | None = None, hang: bool = False
    ) -> None:
        self.status = status
        self._body = body
        self._events = events
        self._hang = hang
        self._closed = asyncio.Event()
        kind = b"text/event-stream" if events is not None else b"application/json"
        self.raw_headers: RawHeaders = [(b"content-type", kind), (b"retry-after", b"0")]
        self.headers: Mapping[str, str] = {k.decode(): v.decode() for k, v in self.raw_headers}

    async def read(self) -> bytes:
        return self._body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        for event in self._events or []:
            yield event
        if self._hang:  # until the gateway closes the reply (its client left)
            await self._closed.wait()
            raise ConnectionResetError("closed")

    def release(self) -> None:
        pass

    def close(self) -> None:
        self._closed.set()


def message(input_tokens: int, output_tokens: int, model: str = MODEL) -> Reply:
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    return Reply(
        200, orjson.dumps({"id": "msg_1", "type": "message", "model": model, "content": [], "usage": usage})
    )


def overloaded() -> Reply:
    return Reply(
        529, orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    )


def stream_begun(input_tokens: int, output_tokens: int) -> Reply:
    """A stream that has sent its ``message_start`` and then produces nothing more until closed."""
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    start = {"type": "message_start", "message": {"id": "msg_1", "model": MODEL, "usage": usage}}
    return Reply(200, events=[b"event: message_start\ndata: " + orjson.dumps(start) + b"\n\n"], hang=True)


class Upstreams:
    """The HTTP client: each upstream answers its scripted replies in turn; ``None`` is unreachable."""

    def __init__(self, script: dict[str, list[Reply | None]]) -> None:
        self.script = script
        self.asked: list[str] = []

    async def request(self, method: str, url: str, headers: RawHeaders, body: bytes | None) -> Reply:
        name = url.split("/")[3]
        self.asked.append(name)
        reply = self.script[name].pop(0)
        if reply is None:
            raise ConnectionRefusedError("refused")
        return reply


def frozen(*upstreams: str) -> Gates:
    """Gates whose buckets do not refill while a test runs, so what a call holds reads exactly."""
    return Gates(upstreams or ("a",), clock=lambda: 0.0)


async def run(gates: Gates, upstreams: Upstreams, call: CallRequest, sink: Sink | None = None) -> ReplyResult:
    """What the pipeline does with a call, without the usage record: admit, dispatch, settle."""
    sink = sink or Sink()
    result = ReplyResult()
    dispatcher = Dispatcher(
        pool=gates.pool,
        http=cast(HttpClient, upstreams),
        retry=RetryPolicy(max_attempts=4),
        rng=random.Random(1),
    )
    async with gates.admission.admit(call, sink, result) as lease:
        await dispatcher.dispatch(lease, sink, result)
    return result


async def holds_nothing(gates: Gates, *upstreams: str) -> None:
    assert await gates.state.acquire("key:7", 1)  # the key's one slot is free
    await gates.state.release("key:7")
    for name in upstreams or ("a",):
        assert gates.in_flight(name) == 0


@virtual_time
async def test_a_call_retried_after_overloads_pays_its_budget_and_tenant_once() -> None:
    gates = frozen()
    upstreams = Upstreams({"a": [overloaded(), overloaded(), message(30, 12)]})
    result = await run(gates, upstreams, gates.call(BUDGETED))
    assert (result.status, result.attempts) == (200, 3)
    assert await gates.budget_spent() == 42
    assert await gates.tenant_level("tokens", 600) == pytest.approx(
        600 - 42, abs=1.0
    )  # plus the retries' refill
    assert await gates.tenant_level("requests", 6) <= 5.5  # one request, however many attempts
    assert await gates.tenant_level("requests", 6) >= 5
    _, input_left, output_left = await gates.lane_levels()
    assert (input_left, output_left) == (
        1_000_000 - 30,
        1_000_000 - 12,
    )  # the failed attempts' estimates came back
    await holds_nothing(gates)


@virtual_time
async def test_a_failover_leaves_nothing_on_the_upstream_that_failed() -> None:
    gates = frozen("a", "b")
    upstreams = Upstreams({"a": [None], "b": [message(30, 12)]})
    result = await run(gates, upstreams, gates.call(BUDGETED))
    assert (result.status, result.upstream, upstreams.asked) == (200, "b", ["a", "b"])
    assert await gates.budget_spent() == 42
    assert await gates.lane_levels("a") == (999, 1_000_000, 1_000_000)
    assert await gates.lane_levels("b") == (999, 1_000_000 - 30, 1_000_000 - 12)
    await holds_nothing(gates, "a", "b")


@virtual_time
async def test_a_fallback_model_runs_on_a_copy_of_the_call_and_pays_once() -> None:
    gates = frozen()
    call = gates.call(BUDGETED, fallbacks=(OTHER_MODEL,))
    upstreams = Upstreams({"a": [overloaded(), message(30, 12, OTHER_MODEL)]})
    result = await run(gates, upstreams, call)
    assert (result.status, result.model) == (200, OTHER_MODEL)
    assert (call.model, call.fallbacks) == (MODEL, (OTHER_MODEL,))  # the caller's call is as it was
    assert await gates.budget_spent() == 42
    await holds_nothing(gates)


@virtual_time
async def test_an_unreachable_upstream_out_of_attempts_returns_every_reservation() -> None:
    gates = frozen()
    upstreams = Upstreams({"a": [None, None, None, None]})
    with pytest.raises(ApiError):
        await run(gates, upstreams, gates.call(BUDGETED))
    assert await gates.budget_spent() == 0
    assert await gates.tenant_level("tokens", 600) == 600
    assert await gates.lane_levels() == (996, 1_000_000, 1_000_000)  # four requests reached it, no tokens
    await holds_nothing(gates)


@virtual_time
async def test_a_call_cancelled_mid_stream_pays_for_what_was_produced_and_holds_nothing() -> None:
    gates = frozen()
    sink = Sink()
    task = asyncio.create_task(
        run(gates, Upstreams({"a": [stream_begun(30, 4)]}), gates.call(BUDGETED), sink)
    )
    await sink.began.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gates.budget_spent() == 34
    assert await gates.lane_levels() == (999, 1_000_000 - 30, 1_000_000 - 4)
    await holds_nothing(gates)


@virtual_time
async def test_a_client_that_leaves_mid_stream_pays_for_what_was_produced_and_holds_nothing() -> None:
    gates = frozen()
    sink = Sink()
    task = asyncio.create_task(run(gates, Upstreams({"a": [stream_begun(30, 4)]}), gates.call(WHO), sink))
    await sink.began.wait()
    sink.leave()
    with pytest.raises(ClientGone):
        await task
    assert await gates.tenant_level("tokens", 600) == 600 - 34
    await holds_nothing(gates)


@virtual_time
async def test_a_client_that_leaves_during_the_retry_backoff_holds_nothing() -> None:
    gates = frozen()
    sink = Sink()
    slow = overloaded()
    slow.raw_headers = [(b"content-type", b"application/json"), (b"retry-after", b"30")]
    slow.headers = {"content-type": "application/json", "retry-after": "30"}
    task = asyncio.create_task(run(gates, Upstreams({"a": [slow]}), gates.call(BUDGETED), sink))
    await asyncio.sleep(5)
    sink.leave()
    with pytest.raises(ClientGone):
        await task
    assert await gates.budget_spent() == 0
    await holds_nothing(gates)


@virtual_time
async def test_a_stream_stopped_by_shutdown_pays_for_what_was_produced_and_holds_nothing() -> None:
    gates = frozen()
    sink = Sink()
    task = asyncio.create_task(
        run(gates, Upstreams({"a": [stream_begun(30, 4)]}), gates.call(BUDGETED), sink)
    )
    await sink.began.wait()
    sink.stop_for_shutdown()
    with pytest.raises(ClientGone):
        await task
    assert sink.shut_down  # the front door ends the reply with an error event
    assert await gates.budget_spent() == 34
    await holds_nothing(gates)


@virtual_time
async def test_a_call_stopped_by_shutdown_while_queued_holds_nothing() -> None:
    gates = Gates(lane=Limits(1, 1_000_000, 1_000_000))
    first, second = Sink(), Sink()
    upstreams = Upstreams({"a": [stream_begun(30, 4)]})
    running = asyncio.create_task(run(gates, upstreams, gates.call(BUDGETED), first))
    await first.began.wait()
    queued = asyncio.create_task(run(gates, upstreams, gates.call(BUDGETED, deadline_in=300), second))
    await asyncio.sleep(5)
    assert gates.queues.waiting("a") == 1
    second.stop_for_shutdown()
    first.stop_for_shutdown()
    for task in (queued, running):
        with pytest.raises(ClientGone):
            await task
    assert gates.queues.waiting("a") == 0
    assert await gates.budget_spent() == 34  # the stream's tokens; the queued call's estimate came back
    await holds_nothing(gates)
