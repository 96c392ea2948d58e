"""``claudegate serve --workers 2`` with Redis: a caller refused by one worker (429 with a retry-after, its
turn kept) that comes back at its retry-after on a new connection reached by the other worker starts there
then, as it would have at the worker that refused it. The upstream never answers 429.

Through the official SDK, one connection per call: each worker times a reply first (as a gateway in service
has), a burst with long deadlines takes most of the account's tier-1 request bucket, then callers with a
short deadline call worker 1, one after another, until several have been refused. Each refused caller
sends the same request again at its ``retry-after-ms`` on a new connection, opened a moment before, that
reached worker 2 (``/health`` names the worker a connection reached).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx2
import orjson
import pytest

from claudegate.simulator.settings import LatencyModel, SimulatorSettings
from claudegate.store.migrate import upgrade_database
from tests.e2e.conftest import make_tenant
from tests.e2e.flow_support import REPLY_TOKENS_HEADER, ledger, simulator
from tests.e2e.test_workers import environment, free_port, start_workers

pytestmark = pytest.mark.redis

BURST = 44  # tier 1 allows 50 requests at once
REFUSED = 4
SHORT_DEADLINE_MS = 600
NETWORK_S = 0.1  # well within the 0.25 s a kept turn waits for its caller after its time
CONNECT_AHEAD_S = 1.0  # under the 5 s an idle connection is kept open by the gateway
FAST = LatencyModel(ttft_s=0.02, tokens_per_second=5000)


@dataclass(slots=True)
class Try:
    status: int
    worker: str
    retry_after_s: float = 0.0
    message: str = ""
    received_at: float = 0.0  # the event loop's time when the reply came


@dataclass(slots=True)
class Caller:
    """A caller's SDK client on its own connection, open (to ``worker``, if given) before it calls."""

    http: httpx2.AsyncClient
    sdk: anthropic.AsyncAnthropic


async def connect(url: str, key: str, *, worker: str | None = None) -> Caller:
    """A new connection (that reached ``worker``, if given: ``/health`` names the worker it reached)."""
    while True:
        http = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=1), timeout=30)
        if worker is not None:
            probe = await http.get(f"{url}/health")
            if probe.headers["x-claudegate-worker"] != worker:
                await http.aclose()  # another worker: a new connection may reach this one
                continue
        sdk = anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0, http_client=http)
        return Caller(http, sdk)


async def send(caller: Caller, number: int, *, deadline_ms: int) -> Try:
    """The caller's request, on its connection; the connection is closed after."""
    async with caller.sdk:
        try:
            raw = await caller.sdk.messages.with_raw_response.create(
                model="claude-sonnet-4-6",
                max_tokens=50,
                messages=[{"role": "user", "content": f"Caller number {number}."}],
                extra_headers={"x-claudegate-deadline-ms": str(deadline_ms), REPLY_TOKENS_HEADER: "5"},
            )
        except anthropic.APIStatusError as error:
            headers = error.response.headers
            return Try(
                error.status_code,
                headers.get("x-claudegate-worker", ""),
                float(headers.get("retry-after-ms", 0)) / 1000,
                error.message,
                asyncio.get_running_loop().time(),
            )
        await raw.parse()
        return Try(raw.status_code, raw.headers["x-claudegate-worker"])


async def one_try(url: str, key: str, number: int, *, worker: str | None = None, deadline_ms: int) -> Try:
    """The caller's request on a new connection (that reached ``worker``, if given)."""
    return await send(await connect(url, key, worker=worker), number, deadline_ms=deadline_ms)


async def back_at_worker_2(url: str, key: str, number: int, refused: Try) -> Try:
    """A refused caller back at its retry-after (a little after, as over a network), at the other worker,
    with the same request.

    The kept turn waits for its caller only a quarter of a second (and a fiftieth of the wait) after its
    time, and the refused caller is told when the gateway refuses it, not when the reply reaches it. So the
    caller opens its connection to worker 2 beforehand (finding one may take several new connections, as
    the kernel picks the worker) and sends its request at its time from that open connection, as a client
    with a connection pool would: what it is late by is then ``NETWORK_S`` and the loopback's delays, not
    however many connections it took to reach worker 2. It connects ``CONNECT_AHEAD_S`` before its time:
    long enough to reach worker 2, short enough that the gateway does not close the idle connection."""
    loop = asyncio.get_running_loop()
    back_at = refused.received_at + refused.retry_after_s + NETWORK_S
    await asyncio.sleep(back_at - CONNECT_AHEAD_S - loop.time())
    caller = await connect(url, key, worker="2")
    await asyncio.sleep(back_at - loop.time())
    return await send(caller, number, deadline_ms=SHORT_DEADLINE_MS)


async def test_a_caller_refused_by_one_worker_starts_at_the_other_when_back_at_its_retry_after(
    redis_url: str, tmp_path: Path
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    await upgrade_database(database_url)
    tenant = await make_tenant(database_url, f"turns-{uuid.uuid4().hex[:8]}")
    log = tmp_path / "gateway.log"
    with simulator(SimulatorSettings(tier="1", latency=FAST)) as upstream:
        env = environment(
            database_url,
            tmp_path,
            CLAUDEGATE_REDIS_URL=redis_url,
            CLAUDEGATE_REDIS_PREFIX=f"test-turns-{uuid.uuid4().hex[:8]}:",
            CLAUDEGATE_UPSTREAMS=orjson.dumps(
                [{"name": "sim", "url": upstream.url, "api_key": "sk-upstream", "tier": "1"}]
            ).decode(),
        )
        port = free_port()
        process = start_workers(env, port, log)
        try:
            url = f"http://127.0.0.1:{port}"
            for worker in ("1", "2"):
                warm = await one_try(url, tenant.key, -1, worker=worker, deadline_ms=30_000)
                assert warm.status == 200
            burst = await asyncio.gather(
                *(one_try(url, tenant.key, -2 - n, deadline_ms=30_000) for n in range(BURST))
            )
            assert all(one.status == 200 for one in burst)
            refusals: list[tuple[Try, asyncio.Task[Try]]] = []
            number = 0
            while len(refusals) < REFUSED and number < 20:
                first = await one_try(url, tenant.key, number, worker="1", deadline_ms=SHORT_DEADLINE_MS)
                if first.status == 429:
                    back = asyncio.create_task(back_at_worker_2(url, tenant.key, number, first))
                    refusals.append((first, back))
                number += 1
            returns = [(first, await back) for first, back in refusals]
            seen = ledger(upstream.url)
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 60)

    assert len(returns) == REFUSED
    for first, back in returns:
        assert first.status == 429, first
        assert first.worker == "1"
        assert first.retry_after_s >= 1.0
        assert back.worker == "2"
        # It started at the other worker, not refused again.
        assert back.status == 200, f"refused: {first.message}\nback: {back.message}"
    assert [entry for entry in seen if entry["status"] == 429] == []
