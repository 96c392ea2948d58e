"""open_reply waits for the upstream in the caller's own task: a client leaving turns into ClientGone, while
any other cancellation of that task (shutdown, an in-process caller's timeout) still propagates."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from claudegate.errors import ApiError
from claudegate.pipeline.relay import ClientGone, open_reply
from claudegate.pipeline.sink import Departure, RawHeaders
from claudegate.upstream.http import HttpClient, UpstreamConnectionError
from claudegate.upstream.target import Upstream

UPSTREAM = Upstream(name="up", base_url="http://upstream.invalid", api_key="sk-test")


class FakeResponse:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeSession:
    """Answers once ``reply`` is released; records whether the request was cancelled."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.reply = asyncio.Event()
        self.started = asyncio.Event()
        self.cancelled = False
        self.error = error
        self.response = FakeResponse()

    async def request(self, method: str, url: str, headers: RawHeaders, body: bytes | None) -> FakeResponse:
        self.started.set()
        try:
            await self.reply.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.error is not None:
            raise self.error
        return self.response


class FakeSink(Departure):
    """Only the ``gone`` half of a sink matters while a reply is awaited."""

    async def start(self, status: int, headers: RawHeaders) -> None:
        pass

    async def send(self, chunk: bytes, *, more: bool) -> None:
        pass


async def _open(session: FakeSession, sink: FakeSink) -> Any:
    return await open_reply(
        cast(HttpClient, session),
        UPSTREAM,
        path_and_query="/v1/messages",
        headers=[],
        body=b"{}",
        sink=sink,
    )


async def _caller(session: FakeSession, sink: FakeSink) -> tuple[str, int]:
    """What open_reply ended with, and whether the task was left cancelling (it must not be)."""
    try:
        await _open(session, sink)
    except ClientGone:
        outcome = "gone"
    else:
        outcome = "reply"
    task = asyncio.current_task()
    assert task is not None
    await asyncio.sleep(0)  # a stray cancellation would hit here
    return outcome, task.cancelling()


async def test_a_client_leaving_abandons_the_upstream_call_as_client_gone() -> None:
    session, sink = FakeSession(), FakeSink()
    caller = asyncio.create_task(_caller(session, sink))
    await session.started.wait()
    sink.leave()
    assert await caller == ("gone", 0)
    assert session.cancelled


async def test_a_client_gone_before_the_call_sends_nothing() -> None:
    session, sink = FakeSession(), FakeSink()
    sink.leave()
    assert await _caller(session, sink) == ("gone", 0)
    assert not session.started.is_set()


async def test_a_cancellation_from_elsewhere_still_propagates() -> None:
    session, sink = FakeSession(), FakeSink()
    caller = asyncio.create_task(_caller(session, sink))
    await session.started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_shutdown_and_a_client_leaving_together_still_cancel() -> None:
    session, sink = FakeSession(), FakeSink()
    caller = asyncio.create_task(_caller(session, sink))
    await session.started.wait()
    sink.leave()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_a_client_leaving_after_the_reply_began_does_not_cancel_the_caller() -> None:
    session, sink = FakeSession(), FakeSink()
    session.reply.set()
    response = await _open(session, sink)
    sink.leave()  # closes the response (the relay notices), but the caller's task goes on
    await asyncio.sleep(0)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    assert response.closed


async def test_a_client_leaving_as_the_reply_arrives_closes_it() -> None:
    session, sink = FakeSession(), FakeSink()
    caller = asyncio.create_task(_caller(session, sink))
    await session.started.wait()
    session.reply.set()  # the request is about to return...
    sink.leave()  # ...when the client leaves
    assert await caller == ("gone", 0)


async def test_an_unreachable_upstream_is_an_api_error() -> None:
    error = UpstreamConnectionError("the upstream closed the connection")
    session, sink = FakeSession(error=error), FakeSink()
    session.reply.set()
    with pytest.raises(ApiError):
        await _open(session, sink)
