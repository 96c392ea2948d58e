"""``RedisState.close`` at shutdown with a Redis that does not answer: the settlements flush and the
disconnect are each given up after their share of the limit, so the gateway process still ends (its
allotments are freed when their leases expire), and no flush is started once it is closed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from claudegate.flow.redis_state import RedisState
from claudegate.flow.state import BucketSpec
from tests.unit.virtual_time import now, virtual_time

SPEC = BucketSpec.per_minute("tokens:sim", 60_000)


class SilentRedis:
    """A Redis client whose commands are sent but never answered (a server stalled, a connection lost
    without a reset), and whose disconnect never completes either."""

    def __init__(self) -> None:
        self.scripts_sent = 0

    def register_script(self, _source: str) -> Any:
        async def run(*, keys: list[str], args: list[Any]) -> Any:
            self.scripts_sent += 1
            await asyncio.get_running_loop().create_future()

        return run

    async def aclose(self, *, close_connection_pool: bool) -> None:
        await asyncio.get_running_loop().create_future()


@virtual_time
async def test_close_ends_even_when_redis_never_answers(caplog: pytest.LogCaptureFixture) -> None:
    redis = SilentRedis()
    state = RedisState(cast(Any, redis))
    await state.charge(SPEC, 500)  # a settlement pending: close must try to send it
    started = now()
    with caplog.at_level(logging.WARNING, logger="claudegate.flow.redis_state"):
        await state.close(timeout_s=1.0)
    assert now() - started == pytest.approx(1.0)
    assert redis.scripts_sent == 1  # it tried
    assert "could not give allotments back to Redis" in caplog.text


@virtual_time
async def test_close_waits_for_a_flush_under_way_only_within_its_limit() -> None:
    redis = SilentRedis()
    state = RedisState(cast(Any, redis), flush_s=0.05)
    await state.charge(SPEC, 500)
    await asyncio.sleep(0.1)  # the timed flush has started, and hangs on Redis
    assert redis.scripts_sent == 1
    started = now()
    await state.close(timeout_s=1.0)
    assert now() - started == pytest.approx(1.0)


@virtual_time
async def test_nothing_is_flushed_after_close() -> None:
    redis = SilentRedis()
    state = RedisState(cast(Any, redis), flush_s=0.05)
    await state.close(timeout_s=1.0)
    await state.charge(SPEC, 500)  # a call still ending after the services closed
    await asyncio.sleep(1.0)
    assert redis.scripts_sent == 0  # a flush now would reconnect to Redis, after its pool was closed
