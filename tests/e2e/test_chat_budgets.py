"""Budgets over real HTTP, on SQLite and PostgreSQL: caps per organisation and per user in tokens and dollars,
refused with 402 naming the cap and its reset, for chat calls and plain /v1/messages calls alike, and shared
by several gateway processes through Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import pytest

from claudegate.store import Store
from tests.e2e.chat_support import CHAT_ID_HEADER, ChatClient, ChatTenant, make_chat_tenant
from tests.e2e.conftest import GatewayServer, Stack, gateway_settings
from tests.servers import running_in_thread

TOMORROW = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")


@pytest.fixture
async def store(stack: Stack) -> AsyncIterator[Store]:
    opened = await Store.open(stack.database_url, upgrade=False)
    try:
        yield opened
    finally:
        await opened.close()


async def until_refused(
    client: ChatClient, turns: int = 40, **fields: Any
) -> tuple[list[dict[str, Any]], Any]:
    """Chat until the budget refuses a turn; the turns that went through and the refusal."""
    done: list[dict[str, Any]] = []
    chat_id = None
    for index in range(turns):
        extra = {"chat_id": chat_id} if chat_id else {}
        response = await client.chat(
            f"Question number {index}, please answer.", max_tokens=60, **fields, **extra
        )
        if response.status_code != 200:
            return done, response
        done.append(response.json())
        chat_id = done[-1]["chat_id"]
    raise AssertionError(f"no refusal in {turns} turns")


def total_tokens(turns: list[dict[str, Any]]) -> int:
    return sum(turn["usage"]["total_tokens"] for turn in turns)


async def test_an_organisation_daily_token_cap(stack: Stack, store: Store) -> None:
    tenant = await make_chat_tenant(stack.database_url, f"budget-{uuid.uuid4().hex[:8]}")
    cap = 1500
    await store.budgets.update(org_id=tenant.org_id, changes={"daily_tokens": cap})
    async with ChatClient(stack.url, tenant.tenant.key) as client:
        done, refusal = await until_refused(client)
        assert refusal.status_code == 402
        error = refusal.json()["error"]
        assert error["type"] == "billing_error"
        assert f"daily token budget of organisation {tenant.name} (1,500 tokens;" in error["message"]
        assert f"It resets at {TOMORROW}" in error["message"]
        assert refusal.headers["x-claudegate-origin"] == "gateway"
        assert len(done) >= 2
        assert total_tokens(done) <= cap + max(turn["usage"]["total_tokens"] for turn in done)

        # The refused question is recorded as failed, in the conversation.
        chat = (await client.get(refusal.headers[CHAT_ID_HEADER])).json()
        assert chat["messages"][-1]["status"] == "failed"
        assert chat["messages"][-1]["error"]["type"] == "billing_error"

    # Budgets are a stage of the pipeline: every front door meets them, /v1/messages included, and every key
    # and user of the organisation. (A long question: what is left of the cap cannot hold it.)
    question = "Please summarise this. " + "The tide comes in and goes out. " * 300
    for key in (tenant.tenant.key, tenant.tenant.user_key):
        sdk = anthropic.AsyncAnthropic(base_url=stack.url, api_key=key, max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as raised:
            await sdk.messages.create(
                model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": question}]
            )
        assert raised.value.status_code == 402
        assert "daily token budget" in str(raised.value)


async def test_a_user_dollar_cap_stops_that_user_only(stack: Stack, store: Store) -> None:
    tenant = await make_chat_tenant(stack.database_url, f"budget-{uuid.uuid4().hex[:8]}")
    bob = await store.orgs.create_user(tenant.org_id, "bob")
    await store.budgets.update(org_id=tenant.org_id, user_id=bob.id, changes={"monthly_usd": "0.004"})
    async with (
        ChatClient(stack.url, tenant.app_key, user="bob") as as_bob,
        ChatClient(stack.url, tenant.app_key, user="carol") as as_carol,
    ):
        done, refusal = await until_refused(as_bob)
        assert refusal.status_code == 402
        message = refusal.json()["error"]["message"]
        assert f"monthly dollar budget of user bob of organisation {tenant.name} ($0.00;" in message
        first_of_next_month = datetime.now(UTC).replace(day=28) + timedelta(days=4)
        assert f"It resets at {first_of_next_month.strftime('%Y-%m')}-01T00:00:00Z" in message
        assert done
        # Carol, another end user of the same organisation, is not affected; nor is the organisation's key.
        assert (await as_carol.chat("Hello")).status_code == 200
        async with ChatClient(stack.url, tenant.tenant.key) as service:
            assert (await service.chat("Hello")).status_code == 200
        # Streams are refused before they start, with the same error. (A long question: what is left of the
        # cap cannot hold it.)
        streamed = await as_bob.stream("Please summarise this. " + "The tide comes in and goes out. " * 300)
        assert streamed.status == 402
        assert streamed.json()["error"]["type"] == "billing_error"


async def test_raising_a_cap_lets_calls_through_again(stack: Stack, store: Store) -> None:
    tenant = await make_chat_tenant(stack.database_url, f"budget-{uuid.uuid4().hex[:8]}")
    await store.budgets.update(org_id=tenant.org_id, changes={"daily_tokens": 300})
    async with ChatClient(stack.url, tenant.tenant.key) as client:
        _, refusal = await until_refused(client)
        assert refusal.status_code == 402
        await store.budgets.update(org_id=tenant.org_id, changes={"daily_tokens": None})
        stack.server.gateway.services.resolver.clear()  # as the admin API does in its own process
        assert (await client.chat("Hello again")).status_code == 200


@pytest.mark.redis
async def test_caps_hold_across_gateway_processes(
    database_url: str, simulator_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Two gateways sharing Redis enforce one cap together: without shared counters each would let the
    organisation spend the whole cap again."""
    tenant: ChatTenant = await make_chat_tenant(database_url, f"shared-{uuid.uuid4().hex[:8]}")
    cap = 1500  # each gateway alone is asked for about twice that
    opened = await Store.open(database_url, upgrade=False)
    try:
        await opened.budgets.update(org_id=tenant.org_id, changes={"daily_tokens": cap})
    finally:
        await opened.close()
    # Organisation ids repeat from one fresh test database to the next: start this one's counters at zero.
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        async for name in redis.scan_iter(match=f"claudegate:count:budget:org:{tenant.org_id}:*"):
            await redis.delete(name)
    finally:
        await redis.aclose()
    settings = gateway_settings(simulator_url, database_url, tmp_path).model_copy(
        update={"redis_url": redis_url}
    )

    with (
        running_in_thread(lambda: GatewayServer(settings)) as first,
        running_in_thread(lambda: GatewayServer(settings)) as second,
    ):
        assert isinstance(first, GatewayServer)
        assert isinstance(second, GatewayServer)
        async with (
            ChatClient(first.url, tenant.tenant.key) as a,
            ChatClient(second.url, tenant.tenant.key) as b,
        ):

            async def talk(client: ChatClient, name: str) -> tuple[int, int]:
                tokens = refused = 0
                for index in range(25):
                    response = await client.chat(f"{name} asks question {index}.", max_tokens=60)
                    if response.status_code == 402:
                        refused += 1
                    else:
                        assert response.status_code == 200, response.text
                        tokens += response.json()["usage"]["total_tokens"]
                return tokens, refused

            results = await asyncio.gather(talk(a, "first"), talk(b, "second"))
    spent = sum(tokens for tokens, _ in results)
    assert spent > cap * 0.8, results  # the cap was used
    assert all(refused > 0 for _, refused in results)  # both gateways refused calls
    assert spent <= cap * 1.2  # and together they kept to one cap, not one each


async def test_a_restarted_gateway_remembers_what_was_spent_today(
    database_url: str, simulator_url: str, tmp_path: Path
) -> None:
    """Without Redis the counters live in the gateway's process: a new one starts them from the usage
    records, so a cap reached before a restart still holds after it."""
    tenant: ChatTenant = await make_chat_tenant(database_url, f"restart-{uuid.uuid4().hex[:8]}")
    opened = await Store.open(database_url, upgrade=False)
    try:
        await opened.budgets.update(org_id=tenant.org_id, changes={"daily_tokens": 800})
    finally:
        await opened.close()
    settings = gateway_settings(simulator_url, database_url, tmp_path)

    with running_in_thread(lambda: GatewayServer(settings)) as first:
        assert isinstance(first, GatewayServer)
        async with ChatClient(first.url, tenant.tenant.key) as client:
            done, refusal = await until_refused(client)
            assert refusal.status_code == 402
            assert done

    with running_in_thread(lambda: GatewayServer(settings)) as second:  # a new process, the same database
        assert isinstance(second, GatewayServer)
        sdk = anthropic.AsyncAnthropic(base_url=second.url, api_key=tenant.tenant.key, max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as raised:
            await sdk.messages.create(
                model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "Hello"}]
            )
        assert raised.value.status_code == 402
        assert "daily token budget" in str(raised.value)
