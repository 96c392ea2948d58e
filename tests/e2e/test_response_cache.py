"""The response cache seen from the official SDK: an identical call is answered from the cache (the same
reply, byte for byte for a stream) without reaching the upstream, is recorded at no cost, and is counted in
the metrics; identical calls in flight share one upstream call; organisations never share entries."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import anthropic
import httpx2
import orjson
import pytest
from typer.testing import CliRunner, Result

from claudegate.cli import app
from claudegate.simulator.settings import SimulatorSettings
from tests.e2e.conftest import SLOW_LATENCY, make_tenant
from tests.e2e.flow_support import (
    FAULT_HEADER,
    MODEL,
    gateway,
    gateway_settings,
    ledger,
    simulator,
    usage_records,
)

CACHED_ORG = "cache-on"
OPTING_OUT_ORG = "cache-on-but-one-key"
CACHE = "x-claudegate-cache"


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with simulator(SimulatorSettings(latency=SLOW_LATENCY)) as server:
        yield server.url


@pytest.fixture(scope="module")
def gateway_url(
    upstream: str, flow_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    settings = gateway_settings(
        upstream,
        flow_database_url,
        tmp_path_factory.mktemp("cache"),
        upstream_tier="unlimited",
        cache_orgs=[CACHED_ORG, OPTING_OUT_ORG],
    )
    with gateway(settings) as server:
        yield server.url


def _sdk(url: str, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0)


def _upstream_calls(url: str) -> int:
    return len(ledger(url))


async def test_an_identical_call_is_answered_from_the_cache_at_no_cost(
    gateway_url: str, upstream: str, flow_database_url: str
) -> None:
    tenant = await make_tenant(flow_database_url, CACHED_ORG)
    sdk = _sdk(gateway_url, tenant.key)
    before = _upstream_calls(upstream)
    prompt = [{"role": "user", "content": "What is the cache for?"}]
    first = await sdk.messages.with_raw_response.create(model=MODEL, max_tokens=20, messages=prompt)  # type: ignore[arg-type]
    second = await sdk.messages.with_raw_response.create(model=MODEL, max_tokens=20, messages=prompt)  # type: ignore[arg-type]

    assert _upstream_calls(upstream) == before + 1
    assert first.headers.get(CACHE) is None
    assert second.headers[CACHE] == "hit"
    assert (await second.parse()).model_dump() == (await first.parse()).model_dump()
    assert second.headers["request-id"] == second.headers["x-claudegate-request-id"]
    rows = await usage_records(flow_database_url, [tenant.key_id], 2)
    assert [row["cached"] for row in rows] == [False, True]
    assert rows[0]["cost_usd"] > 0
    assert rows[1]["cost_usd"] == 0
    assert rows[1]["status"] == 200
    assert rows[1]["attempts"] == 0
    assert rows[1]["upstream"] is None

    metrics = httpx2.get(f"{gateway_url}/metrics").text
    assert f'claudegate_cache_hits_total{{org="{CACHED_ORG}"}} 1.0' in metrics


async def test_a_cached_stream_is_replayed_byte_for_byte(
    gateway_url: str, upstream: str, flow_database_url: str
) -> None:
    tenant = await make_tenant(flow_database_url, "stream-cache")
    body = {"model": MODEL, "max_tokens": 30, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    headers = {"x-api-key": tenant.key, "anthropic-version": "2023-06-01", CACHE: "on"}
    before = _upstream_calls(upstream)
    async with httpx2.AsyncClient(base_url=gateway_url) as http:
        first = await http.post("/v1/messages", json=body, headers=headers)
        second = await http.post("/v1/messages", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.headers[CACHE] == "hit"
    assert second.content == first.content
    assert b"message_stop" in first.content
    assert _upstream_calls(upstream) == before + 1

    # The SDK reads a replayed stream as it read the original (its body differs from the one above in the
    # order of its members, so it is a request of its own: stored once, then replayed).
    sdk = _sdk(gateway_url, tenant.key)
    replies = []
    for _ in range(2):
        async with sdk.messages.stream(
            model=MODEL,
            max_tokens=30,
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={CACHE: "on"},
        ) as stream:
            replies.append((stream.response.headers.get(CACHE), await stream.get_final_message()))
    assert [hit for hit, _ in replies] == [None, "hit"]
    assert replies[1][1].model_dump() == replies[0][1].model_dump()
    assert replies[1][1].content[0].type == "text"
    assert _upstream_calls(upstream) == before + 2


async def test_opting_in_and_out_per_request(gateway_url: str, upstream: str, flow_database_url: str) -> None:
    tenant = await make_tenant(flow_database_url, "cache-off-by-default")
    sdk = _sdk(gateway_url, tenant.key)
    prompt = [{"role": "user", "content": "opt in"}]

    async def ask(mode: str | None) -> str | None:
        extra = {CACHE: mode} if mode else {}
        raw = await sdk.messages.with_raw_response.create(
            model=MODEL,
            max_tokens=10,
            messages=prompt,  # type: ignore[arg-type]
            extra_headers=extra,
        )
        return raw.headers.get(CACHE)

    before = _upstream_calls(upstream)
    assert await ask(None) is None  # not opted in: stored nothing
    assert await ask("on") is None  # nothing cached yet: goes upstream, stores
    assert await ask("on") == "hit"
    assert await ask(None) is None  # the organisation has not opted in
    assert await ask("off") is None
    assert await ask("refresh") is None  # goes upstream and replaces the entry
    assert await ask("on") == "hit"
    assert _upstream_calls(upstream) == before + 5


def _keys_cli(database_url: str, *args: str) -> Result:
    """``claudegate keys ARGS`` against the gateway's database, in a thread (the command runs a loop)."""
    env = {"CLAUDEGATE_DATABASE_URL": database_url}
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(CliRunner().invoke, app, ["keys", *args], env=env).result()


async def test_opting_in_and_out_per_key(gateway_url: str, upstream: str, flow_database_url: str) -> None:
    plain = await make_tenant(flow_database_url, "cache-per-key")  # its organisation has not opted in
    on = _keys_cli(flow_database_url, "limits", str(plain.key_id), "--cache", "on", "--json")
    assert on.exit_code == 0, on.output
    assert orjson.loads(on.stdout)["cache_replies"] is True
    shown = _keys_cli(flow_database_url, "limits", str(plain.user_key_id))
    assert "response cache       as its organisation" in shown.output
    refused = _keys_cli(flow_database_url, "limits", str(plain.key_id), "--cache", "maybe")
    assert refused.exit_code == 1
    assert "--cache: expected on, off or default" in refused.output

    async def ask(key: str, text: str, mode: str | None = None) -> str | None:
        raw = await _sdk(gateway_url, key).messages.with_raw_response.create(
            model=MODEL,
            max_tokens=10,
            messages=[{"role": "user", "content": text}],
            extra_headers={CACHE: mode} if mode else {},
        )
        return raw.headers.get(CACHE)

    before = _upstream_calls(upstream)
    # The key that opted in is answered from the cache; its organisation's other key is not.
    assert [await ask(plain.key, "per key") for _ in range(2)] == [None, "hit"]
    assert [await ask(plain.user_key, "per key, other key") for _ in range(2)] == [None, None]
    assert await ask(plain.key, "per key", "off") is None  # the request's header still decides first
    assert _upstream_calls(upstream) == before + 4


async def test_a_key_may_opt_out_of_its_organisation_s_cache(
    gateway_url: str, upstream: str, flow_database_url: str
) -> None:
    tenant = await make_tenant(flow_database_url, OPTING_OUT_ORG)  # listed in cache_orgs
    assert _keys_cli(flow_database_url, "limits", str(tenant.key_id), "--cache", "off").exit_code == 0
    before = _upstream_calls(upstream)
    prompt = [{"role": "user", "content": "opt out"}]
    for key, expected in ((tenant.key, [None, None]), (tenant.user_key, [None, "hit"])):
        sdk = _sdk(gateway_url, key)
        seen = []
        for _ in range(2):
            raw = await sdk.messages.with_raw_response.create(model=MODEL, max_tokens=10, messages=prompt)  # type: ignore[arg-type]
            seen.append(raw.headers.get(CACHE))
        assert seen == expected
    assert _upstream_calls(upstream) == before + 3
    back = _keys_cli(flow_database_url, "limits", str(tenant.key_id), "--cache", "default", "--json")
    assert orjson.loads(back.stdout)["cache_replies"] is None


async def test_organisations_never_share_an_entry(
    gateway_url: str, upstream: str, flow_database_url: str
) -> None:
    a = await make_tenant(flow_database_url, "cache-tenant-a")
    b = await make_tenant(flow_database_url, "cache-tenant-b")
    prompt = [{"role": "user", "content": "a secret of my own"}]
    on = {CACHE: "on"}
    first = await _sdk(gateway_url, a.key).messages.with_raw_response.create(
        model=MODEL,
        max_tokens=10,
        messages=prompt,
        extra_headers=on,  # type: ignore[arg-type]
    )
    other = await _sdk(gateway_url, b.key).messages.with_raw_response.create(
        model=MODEL,
        max_tokens=10,
        messages=prompt,
        extra_headers=on,  # type: ignore[arg-type]
    )
    assert first.headers.get(CACHE) is None
    assert other.headers.get(CACHE) is None
    assert (await other.parse()).id != (await first.parse()).id


async def test_identical_calls_in_flight_share_one_upstream_call(
    gateway_url: str, upstream: str, flow_database_url: str
) -> None:
    tenant = await make_tenant(flow_database_url, "cache-single-flight")
    sdk = _sdk(gateway_url, tenant.key)
    prompt = [{"role": "user", "content": "all at once"}]
    before = _upstream_calls(upstream)

    async def ask(stream: bool) -> str:
        if stream:
            async with sdk.messages.stream(
                model=MODEL,
                max_tokens=40,
                messages=prompt,
                extra_headers={CACHE: "on"},  # type: ignore[arg-type]
            ) as events:
                return (await events.get_final_message()).id
        reply = await sdk.messages.create(
            model=MODEL,
            max_tokens=40,
            messages=prompt,
            extra_headers={CACHE: "on"},  # type: ignore[arg-type]
        )
        return reply.id

    streamed = await asyncio.gather(*(ask(True) for _ in range(4)))
    plain = await asyncio.gather(*(ask(False) for _ in range(4)))
    assert len(set(streamed)) == 1
    assert len(set(plain)) == 1
    assert _upstream_calls(upstream) == before + 2  # one streamed, one not: different requests
    rows = await usage_records(flow_database_url, [tenant.key_id], 8)
    assert sorted(row["cached"] for row in rows) == [False] * 2 + [True] * 6


async def test_error_replies_are_not_cached(gateway_url: str, upstream: str, flow_database_url: str) -> None:
    tenant = await make_tenant(flow_database_url, "cache-errors")
    sdk = _sdk(gateway_url, tenant.key)
    prompt = [{"role": "user", "content": "fail once"}]
    refused = {CACHE: "on", FAULT_HEADER: "permission;times=1"}
    with pytest.raises(anthropic.PermissionDeniedError):
        await sdk.messages.create(model=MODEL, max_tokens=10, messages=prompt, extra_headers=refused)  # type: ignore[arg-type]
    raw = await sdk.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=10,
        messages=prompt,
        extra_headers=refused,  # type: ignore[arg-type]
    )
    assert raw.headers.get(CACHE) is None
    assert (await raw.parse()).content

    # A stream that ends in an error event came with status 200, and is not stored either.
    cut = {CACHE: "on", FAULT_HEADER: "midstream_error;times=1"}
    with pytest.raises(anthropic.APIStatusError):
        async with sdk.messages.stream(
            model=MODEL,
            max_tokens=30,
            messages=prompt,
            extra_headers=cut,  # type: ignore[arg-type]
        ) as stream:
            await stream.get_final_message()
    async with sdk.messages.stream(
        model=MODEL,
        max_tokens=30,
        messages=prompt,
        extra_headers=cut,  # type: ignore[arg-type]
    ) as stream:
        await stream.get_final_message()
        assert stream.response.headers.get(CACHE) is None


async def test_gateways_on_one_redis_share_their_cache(
    upstream: str, flow_database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tenant = await make_tenant(flow_database_url, "cache-redis")
    prefix = f"test-cache-{uuid.uuid4().hex[:8]}:"
    settings = [
        gateway_settings(
            upstream,
            flow_database_url,
            tmp_path_factory.mktemp("redis-cache"),
            upstream_tier="unlimited",
            cache_orgs=["cache-redis"],
            cache_backend="redis",
            redis_url=redis_url,
            redis_prefix=prefix,
        )
        for _ in range(2)
    ]
    prompt = [{"role": "user", "content": "shared between processes"}]
    before = _upstream_calls(upstream)
    try:
        with gateway(settings[0]) as first, gateway(settings[1]) as second:
            stored = await _sdk(first.url, tenant.key).messages.with_raw_response.create(
                model=MODEL,
                max_tokens=10,
                messages=prompt,  # type: ignore[arg-type]
            )
            served = await _sdk(second.url, tenant.key).messages.with_raw_response.create(
                model=MODEL,
                max_tokens=10,
                messages=prompt,  # type: ignore[arg-type]
            )
    finally:
        from redis.asyncio import Redis  # an optional dependency, like Redis itself

        redis = Redis.from_url(redis_url)
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        await redis.delete(*keys)
        await redis.aclose()
    cached = [key for key in keys if key.startswith(f"{prefix}cache:".encode())]
    assert len(cached) == 1  # the one reply, under this test's prefix (the rest is flow control's)
    assert stored.headers.get(CACHE) is None
    assert served.headers[CACHE] == "hit"
    assert (await served.parse()).model_dump() == (await stored.parse()).model_dump()
    assert _upstream_calls(upstream) == before + 1
