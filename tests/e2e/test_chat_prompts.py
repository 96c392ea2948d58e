"""Prompt versions through the chat API, on SQLite and PostgreSQL: activation, rollback, A/B splits whose draw
sticks to the conversation, the system prompt cached across turns, and usage reported per version."""

from __future__ import annotations

import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from claudegate.store import Store
from claudegate.wire.tokens import REQUEST_OVERHEAD_TOKENS
from tests.e2e.chat_support import MODEL, ChatClient, ChatTenant, count_tokens, make_chat_tenant, sent_history
from tests.e2e.conftest import Stack

SYSTEM_1 = "You are Ada, the friendly assistant of a sailing school. Answer briefly."
SYSTEM_2 = "You are Bo, the terse assistant of a sailing school. Answer in one sentence, and never apologise."


@pytest.fixture
async def tenant(stack: Stack) -> ChatTenant:
    return await make_chat_tenant(stack.database_url, f"prompts-{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def store(stack: Stack) -> Any:
    opened = await Store.open(stack.database_url, upgrade=False)
    try:
        yield opened
    finally:
        await opened.close()


async def expected_input(stack: Stack, system: str, chat: dict[str, Any], question: str) -> int:
    """What the simulator counts for the chat's next turn with this system prompt."""
    messages = [*sent_history(chat), {"role": "user", "content": [{"type": "text", "text": question}]}]
    return await count_tokens(
        stack.simulator_url,
        {"model": MODEL, "system": [{"type": "text", "text": system}], "messages": messages},
    )


async def turn(stack: Stack, client: ChatClient, system: str, chat_id: str, question: str) -> dict[str, Any]:
    """One more turn of a chat, checked to have been sent with ``system`` as its system prompt."""
    chat = (await client.get(chat_id)).json()
    expected = await expected_input(stack, system, chat, question)
    reply = await client.ok(question, chat_id=chat_id)
    assert reply["usage"]["input_tokens"] == expected
    return reply


async def test_activate_and_roll_back_while_chats_keep_their_version(
    stack: Stack, tenant: ChatTenant, store: Store
) -> None:
    await store.prompts.create_version(tenant.org_id, "support", system=SYSTEM_1, note="first")
    async with ChatClient(stack.url, tenant.tenant.key) as client:
        first = await client.ok("Hello", prompt="support")
        assert first["prompt"] == {"name": "support", "version": 1}
        expected = await count_tokens(
            stack.simulator_url,
            {
                "model": MODEL,
                "system": [{"type": "text", "text": SYSTEM_1}],
                "messages": [{"role": "user", "content": "Hello"}],
            },
        )
        assert first["usage"]["input_tokens"] == expected

        _, version = await store.prompts.create_version(
            tenant.org_id, "support", system=SYSTEM_2, activate=True
        )
        assert version.version == 2
        second = await client.ok("Hello", prompt="support")
        assert second["prompt"] == {"name": "support", "version": 2}
        # The first chat keeps version 1 for good, turn after turn.
        await turn(stack, client, SYSTEM_1, first["chat_id"], "Still there?")
        await turn(stack, client, SYSTEM_2, second["chat_id"], "Still there?")
        chat = (await client.get(first["chat_id"])).json()
        assert chat["prompt"] == {"name": "support", "version": 1}

        prompt = await store.prompts.rollback(tenant.org_id, "support")
        assert (prompt.active_version, prompt.previous_version) == (1, 2)
        third = await client.ok("Hello", prompt="support")
        assert third["prompt"] == {"name": "support", "version": 1}
        # A conversation keeps its prompt: naming another is refused; naming its own is fine.
        refused = await client.chat("Switch?", chat_id=third["chat_id"], prompt="other")
        assert refused.status_code == 400
        assert "uses prompt 'support' for good" in refused.json()["error"]["message"]
        assert (await client.chat("Same", chat_id=third["chat_id"], prompt="support")).status_code == 200


async def test_a_split_is_drawn_per_chat_sticks_and_is_reported_per_version(
    stack: Stack, tenant: ChatTenant, store: Store
) -> None:
    await store.prompts.create_version(tenant.org_id, "ab", system=SYSTEM_1)
    await store.prompts.create_version(tenant.org_id, "ab", system=SYSTEM_2)
    await store.prompts.set_split(tenant.org_id, "ab", {1: 1.0, 2: 1.0})
    systems = {1: SYSTEM_1, 2: SYSTEM_2}
    drawn: dict[str, int] = {}
    async with ChatClient(stack.url, tenant.app_key, user="tester") as client:
        for index in range(30):
            if index % 3:
                reply = await client.ok(f"Hi {index}", prompt="ab")
                drawn[reply["chat_id"]] = reply["prompt"]["version"]
            else:
                outcome = await client.stream(f"Hi {index}", prompt="ab")
                chat = (await client.get(outcome.last["chat_id"])).json()
                drawn[chat["id"]] = chat["prompt"]["version"]
        counts = Counter(drawn.values())
        assert set(counts) == {1, 2}
        assert min(counts.values()) >= 8  # 30 fair draws: both versions get a fair share

        # The split changes; every chat keeps the version it drew, and new chats follow the new split.
        await store.prompts.set_split(tenant.org_id, "ab", {2: 1.0})
        for chat_id, version in list(drawn.items())[:6]:
            await turn(stack, client, systems[version], chat_id, "And now?")
        for index in range(5):
            assert (await client.ok(f"New {index}", prompt="ab"))["prompt"]["version"] == 2

        # Usage per version: exactly what the chats of each version used.
        totals: dict[int, dict[str, Any]] = {1: Counter(), 2: Counter()}
        for chat in (await client.chats(limit=1000)).json()["data"]:
            version = chat["prompt"]["version"]
            totals[version]["chats"] += 1
            for message in (await client.get(chat["id"])).json()["messages"]:
                totals[version]["replies"] += message["role"] == "assistant"
                totals[version]["output_tokens"] += message["usage"]["output_tokens"]
                totals[version]["cost"] += Decimal(message["cost_usd"] or 0)
    prompt = await store.prompts.get_prompt(tenant.org_id, "ab")
    assert prompt is not None
    usage = {row.version: row for row in await store.prompts.usage(prompt.id)}
    for version in (1, 2):
        row = usage[version]
        assert row.conversations == totals[version]["chats"]
        assert row.replies == totals[version]["replies"]
        assert row.output_tokens == totals[version]["output_tokens"]
        assert row.cost_usd == totals[version]["cost"]
        assert row.failed == 0


async def test_the_system_prompt_is_read_from_the_cache_on_later_turns(
    stack: Stack, tenant: ChatTenant, store: Store
) -> None:
    # Unique text: the session's simulator (and its cache) serves every test, on both databases.
    long_system = f"You are the support assistant of shop {tenant.name}; be precise and kind. " * 200
    await store.prompts.create_version(tenant.org_id, "long", system=long_system)
    async with ChatClient(stack.url, tenant.tenant.key) as client:
        first = await client.ok("Where is my order?", prompt="long")
        assert first["usage"]["cache_creation_input_tokens"] > 2048  # Sonnet 4.6's minimum cacheable length
        assert first["usage"]["cache_read_input_tokens"] == 0
        chat_id = first["chat_id"]
        previous = first
        for question in ("It was order 42.", "Can you check again?", "Thanks!"):
            reply = await client.ok(question, chat_id=chat_id)
            usage = reply["usage"]
            # Everything the previous call sent (bar the request's own framing) was cached by it and is read
            # now; only the last answer and the new question are new.
            assert (
                usage["cache_read_input_tokens"]
                == previous["usage"]["input_tokens"] - REQUEST_OVERHEAD_TOKENS
            )
            assert usage["cache_read_input_tokens"] / usage["input_tokens"] > 0.9
            previous = reply
