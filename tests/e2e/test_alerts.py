"""Alerts reach a webhook receiver on loopback (an aiohttp server, as Slack's would be) from real gateway
traffic: a breaker that opens, an upstream that throttles, an error rate over its threshold and a budget
filling up; each once, however many calls repeat it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
from aiohttp import web

from claudegate.store import Store
from tests.e2e.conftest import Tenant, make_tenant
from tests.e2e.flow_support import FAULT_HEADER, MODEL, gateway, gateway_settings, simulator


class Receiver:
    """A webhook endpoint that keeps what it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        self.bodies.append(orjson.loads(await request.read()))
        self.arrived.set()
        return web.Response(text="ok")

    async def until(self, count: int) -> list[dict[str, Any]]:
        """The bodies once ``count`` have arrived (each arrival wakes this), or a failure that shows what
        arrived if they have not within a generous bound."""
        try:
            async with asyncio.timeout(20):
                while len(self.bodies) < count:
                    self.arrived.clear()
                    await self.arrived.wait()
        except TimeoutError:
            raise AssertionError(f"expected {count} alerts, received {self.bodies}") from None
        return self.bodies


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    await hook.start()
    yield hook
    await hook.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with simulator() as server:
        yield server.url


def _settings(upstream: str, database_url: str, tmp: Path, hook: str, **overrides: Any) -> Any:
    return gateway_settings(
        upstream,
        database_url,
        tmp,
        upstream_tier="unlimited",
        retry_max_attempts=1,
        alert_webhooks=[hook],
        **overrides,
    )


async def _calls(url: str, tenant: Tenant, count: int, fault: str | None = None) -> None:
    sdk = anthropic.AsyncAnthropic(base_url=url, api_key=tenant.key, max_retries=0)
    headers = {FAULT_HEADER: fault} if fault else {}
    for _ in range(count):
        with contextlib.suppress(anthropic.APIStatusError):
            await sdk.messages.create(
                model=MODEL,
                max_tokens=10,
                messages=[{"role": "user", "content": f"hi {uuid.uuid4().hex}"}],
                extra_headers=headers,
            )


async def test_a_breaker_opening_and_an_error_rate_alert_once(
    receiver: Receiver, upstream: str, flow_database_url: str, tmp_path: Path
) -> None:
    tenant = await make_tenant(flow_database_url, f"alerts-{uuid.uuid4().hex[:6]}")
    settings = _settings(
        upstream,
        flow_database_url,
        tmp_path,
        receiver.url,
        breaker_failure_threshold=3,
        breaker_open_s=600,
        alert_error_min_calls=4,
        alert_error_rate=0.5,
    )
    with gateway(settings) as server:
        await _calls(server.url, tenant, 2)
        await _calls(server.url, tenant, 6, fault="server_error")
        bodies = await receiver.until(2)
    texts = sorted(body["text"] for body in bodies)
    assert len(bodies) == 2  # each once: the breaker opened once, the error rate is deduplicated
    assert "calls failed" in texts[0]
    assert "threshold 50%" in texts[0]
    assert "upstream upstream is failing; its circuit breaker opened for 600 s" in texts[1]


async def test_upstream_429s_alert_with_a_plain_json_body(
    receiver: Receiver, upstream: str, flow_database_url: str, tmp_path: Path
) -> None:
    tenant = await make_tenant(flow_database_url, f"alerts-{uuid.uuid4().hex[:6]}")
    settings = _settings(upstream, flow_database_url, tmp_path, receiver.url, alert_format="json")
    with gateway(settings) as server:
        await _calls(server.url, tenant, 3, fault="rate_limit")
        bodies = await receiver.until(1)
    assert len(bodies) == 1
    assert bodies[0]["kind"] == "upstream_throttled"
    assert bodies[0]["subject"] == "upstream"
    assert "answered 429 rate_limit_error" in bodies[0]["text"]
    assert bodies[0]["at"].endswith("+00:00")


async def test_a_budget_alerts_at_80_and_100_percent(
    receiver: Receiver, upstream: str, flow_database_url: str, tmp_path: Path
) -> None:
    name = f"alerts-budget-{uuid.uuid4().hex[:6]}"
    tenant = await make_tenant(flow_database_url, name)
    store = await Store.open(flow_database_url)
    try:
        await store.budgets.update(org_id=tenant.org_id, changes={"daily_tokens": 1500})
    finally:
        await store.close()
    with gateway(_settings(upstream, flow_database_url, tmp_path, receiver.url)) as server:
        sdk = anthropic.AsyncAnthropic(base_url=server.url, api_key=tenant.key, max_retries=0)
        refusal: anthropic.APIStatusError | None = None
        for _ in range(200):
            try:
                await sdk.messages.create(
                    model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "How are you today?"}]
                )
            except anthropic.APIStatusError as error:
                refusal = error
                break
        assert refusal is not None
        assert refusal.status_code == 402
        bodies = await receiver.until(2)
    texts = [body["text"] for body in bodies]
    assert len(texts) == 2
    assert f"daily token budget of organisation {name} has reached 80%" in texts[0]
    assert f"daily token budget of organisation {name} has reached 100%" in texts[1]
