"""The disconnect watcher starts only once a call has run WATCH_AFTER_S: a fast call creates no task for it,
and a client that leaves a longer call is still noticed."""

from __future__ import annotations

import asyncio

from starlette.types import Message

from claudegate.pipeline.sink import WATCH_AFTER_S, DisconnectWatch


class FakeReceive:
    def __init__(self) -> None:
        self.calls = 0
        self.disconnect = asyncio.Event()

    async def __call__(self) -> Message:
        self.calls += 1
        await self.disconnect.wait()
        return {"type": "http.disconnect"}


async def test_a_call_that_ends_quickly_never_listens() -> None:
    receive = FakeReceive()
    watch = DisconnectWatch(receive)
    watch.watch()
    await asyncio.sleep(0)
    watch.close()
    await asyncio.sleep(WATCH_AFTER_S * 2)
    assert receive.calls == 0
    assert not watch.gone.is_set()


async def test_a_client_leaving_a_longer_call_is_noticed() -> None:
    receive = FakeReceive()
    watch = DisconnectWatch(receive)
    left: list[str] = []
    watch.on_gone(lambda: left.append("left"))
    watch.watch()
    await asyncio.sleep(WATCH_AFTER_S * 2)
    assert receive.calls == 1
    receive.disconnect.set()
    await asyncio.wait_for(watch.gone.wait(), 1)
    assert left == ["left"]
    watch.close()


async def test_a_client_gone_before_the_watcher_started_is_noticed_once_it_starts() -> None:
    receive = FakeReceive()
    receive.disconnect.set()
    watch = DisconnectWatch(receive)
    watch.watch()
    await asyncio.wait_for(watch.gone.wait(), 1)
    watch.close()
