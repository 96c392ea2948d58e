"""``claudegate serve --workers 2`` with Redis: a caller refused by one worker (429 with a retry-after, its
turn kept) that comes back at its retry-after on a new connection reached by the other worker starts there
then, as it would have at the worker that refused it. The upstream never answers 429.

A burst larger than the account's tier-1 request bucket is sent through the official SDK, one connection
per caller, each call with a short deadline so that the calls beyond the bucket are refused at once. Every
refused caller sleeps its ``retry-after-ms`` and sends the same request again on a new connection, first
making sure (``/health`` names the worker) that the connection reached the worker that did not refuse it.
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

CALLERS = 56  # tier 1 allows 50 requests at once: the last few are refused
DEADLINE_MS = 600
FAST = LatencyModel(ttft_s=0.02, tokens_per_second=5000)


@dataclass(slots=True)
class Try:
    status: int
    worker: str
    retry_after_s: float = 0.0


async def one_try(url: str, key: str, number: int, *, avoid: str | None = None) -> Try:
    """The caller's request on a new connection (to another worker than ``avoid``, if given)."""
    while True:
        http = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=1), timeout=30)
        if avoid is not None:
            probe = await http.get(f"{url}/health")
            if probe.headers["x-claudegate-worker"] == avoid:
                await http.aclose()  # the same worker: a new connection may reach the other one
                continue
        sdk = anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0, http_client=http)
        async with sdk:
            try:
                raw = await sdk.messages.with_raw_response.create(
                    model="claude-sonnet-4-6",
                    max_tokens=50,
                    messages=[{"role": "user", "content": f"Caller number {number}."}],
                    extra_headers={"x-claudegate-deadline-ms": str(DEADLINE_MS), REPLY_TOKENS_HEADER: "5"},
                )
            except anthropic.APIStatusError as error:
                headers = error.response.headers
                return Try(
                    error.status_code,
                    headers.get("x-claudegate-worker", ""),
                    float(headers.get("retry-after-ms", 0)) / 1000,
                )
            await raw.parse()
            return Try(raw.status_code, raw.headers["x-claudegate-worker"])


async def caller(url: str, key: str, number: int) -> list[Try]:
    """A caller that, refused, comes back once at its retry-after, to the other worker."""
    first = await one_try(url, key, number)
    if first.status != 429:
        return [first]
    await asyncio.sleep(first.retry_after_s)
    return [first, await one_try(url, key, number, avoid=first.worker)]


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
            callers = await asyncio.gather(*(caller(url, tenant.key, n) for n in range(CALLERS)))
            seen = ledger(upstream.url)
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 60)

    returned = [tries for tries in callers if len(tries) == 2]
    assert returned, "the burst exceeded the bucket: some callers were refused"
    for first, back in returned:
        assert first.status == 429
        assert first.retry_after_s >= 1.0
        assert back.worker != first.worker  # it came back to the other worker
        assert back.status == 200, (first, back)  # and started there, not refused again
    assert all(tries[0].status == 200 for tries in callers if len(tries) == 1)
    assert [entry for entry in seen if entry["status"] == 429] == []
