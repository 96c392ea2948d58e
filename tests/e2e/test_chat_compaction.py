"""A long chat through the chat API stays inside its budget: older turns are compacted into a summary by the
cheaper model, the summary is stored with the conversation and sent with every later turn."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from claudegate.store import upgrade_database
from claudegate.store._engine import create_engine
from claudegate.store.tables import ChatMessage, Conversation, UsageRow
from tests.e2e.chat_support import ChatClient, eventually, make_chat_tenant
from tests.e2e.conftest import GatewayServer, Stack, gateway_settings
from tests.e2e.conftest import usage_rows as gateway_usage_rows
from tests.servers import running_in_thread

BUDGET = 3000  # chat_history_tokens: far below any model's window, so a test conversation passes it


@pytest.fixture
def small_database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"


@pytest.fixture
def gateway_url(simulator_url: str, small_database_url: str, tmp_path: Path) -> Iterator[str]:
    settings = gateway_settings(simulator_url, small_database_url, tmp_path).model_copy(
        update={"chat_history_tokens": BUDGET}
    )
    with running_in_thread(lambda: GatewayServer(settings)) as server:
        assert isinstance(server, GatewayServer)
        yield server.url


async def test_a_300_turn_chat_keeps_a_stored_summary_and_stays_inside_its_budget(
    small_database_url: str, gateway_url: str
) -> None:
    database_url = small_database_url
    await upgrade_database(database_url)
    tenant = await make_chat_tenant(database_url, "long-chat")
    async with ChatClient(gateway_url, tenant.tenant.key) as chat:
        first = await chat.ok("My name is Ada. Tell me about tides.", max_tokens=200)
        chat_id = first["chat_id"]
        for turn in range(299):
            reply = await chat.ok(f"Turn {turn}: one more thing about the moon, please.", chat_id=chat_id)
            assert reply["usage"]["input_tokens"] <= BUDGET
    engine = create_engine(database_url)
    models: list[str] = []

    async def every_call_recorded() -> bool:
        """Usage records are written in batches after the replies: wait for all of them."""
        async with engine.connect() as conn:
            rows = await conn.execute(select(UsageRow.model).where(UsageRow.org_id == tenant.tenant.org_id))
            models[:] = rows.scalars().all()
        return len(models) == 300 + sum(model.startswith("claude-haiku") for model in models)

    try:
        await eventually(every_call_recorded)
        async with engine.connect() as conn:
            summary, through = (
                await conn.execute(
                    select(Conversation.summary, Conversation.summary_through).where(
                        Conversation.id == chat_id
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    assert summary
    assert through.startswith("cmsg_")
    assert sum(model.startswith("claude-haiku") for model in models) >= 3  # compacted again and again


async def test_a_chat_reply_cut_twice_by_max_tokens_is_continued_to_its_end(stack: Stack) -> None:
    tenant = await make_chat_tenant(stack.database_url, f"cont-{uuid.uuid4().hex[:8]}")
    thirty = {"x-simulator-reply-tokens": "30"}  # a 30-token answer, cut at 12 tokens a call
    async with ChatClient(stack.url, tenant.tenant.key) as chat:
        cut = await chat.ok("Tell me about the sea.", max_tokens=12, headers=thirty)
        whole = await chat.ok("Tell me about the sea.", max_tokens=12, max_continuations=3, headers=thirty)
        stored = (await chat.get(whole["chat_id"])).json()
        bad = await chat.chat("Hi", max_continuations=99)
    assert cut["stop_reason"] == "max_tokens"
    assert whole["stop_reason"] == "end_turn"
    assert whole["usage"]["output_tokens"] >= 30  # the simulator counts the prefill as the tokenizer does

    async def every_call_summed() -> bool:
        rows = await gateway_usage_rows(stack.database_url, [tenant.tenant.key_id])
        continued = [row for row in rows if row["output_tokens"] and row["request_id"] != cut_request]
        return (
            len(rows) == 4
            and sum(row["output_tokens"] for row in continued) == whole["usage"]["output_tokens"]
        )

    cut_request = await chat_request_id(stack.database_url, cut["message_id"])
    await eventually(every_call_summed)
    assert whole["reply"].startswith(cut["reply"].rstrip())
    assert stored["messages"][-1]["content"] == [{"type": "text", "text": whole["reply"]}]
    assert bad.status_code == 400
    assert "max_continuations: must be a whole number from 0 to 10" in bad.text


async def test_a_streamed_chat_reply_cut_twice_by_max_tokens_streams_on_to_its_end(stack: Stack) -> None:
    tenant = await make_chat_tenant(stack.database_url, f"scont-{uuid.uuid4().hex[:8]}")
    thirty = {"x-simulator-reply-tokens": "30"}  # a 30-token answer, cut at 12 tokens a call
    async with ChatClient(stack.url, tenant.tenant.key) as chat:
        cut = await chat.stream("Tell me about the sea.", max_tokens=12, headers=thirty)
        whole = await chat.stream(
            "Tell me about the sea.", max_tokens=12, max_continuations=3, headers=thirty
        )
        done = whole.events[-1]
        stored = (await chat.get(done["chat_id"])).json()
    assert cut.status == whole.status == 200
    assert cut.events[-1]["stop_reason"] == "max_tokens"
    assert done["done"] is True
    assert "error" not in done
    assert done["stop_reason"] == "end_turn"
    streamed = "".join(event["token"] for event in whole.events)
    cut_text = cut.events[-1]["fullText"]
    assert len(done["fullText"]) > len(cut_text)
    assert done["fullText"].startswith(cut_text.rstrip())
    # one stream: every token of every piece, in order, adds up to the stored reply (up to the whitespace
    # at a cut, which the continuation's prefill leaves out)
    assert streamed.split() == done["fullText"].split()
    assert stored["messages"][-1]["content"] == [{"type": "text", "text": done["fullText"]}]
    assert [event["done"] for event in whole.events].count(True) == 1

    async def every_call_summed() -> bool:
        rows = await gateway_usage_rows(stack.database_url, [tenant.tenant.key_id])
        continued = [row for row in rows if row["request_id"] != cut_request]
        return len(rows) == 4 and (
            sum(row["output_tokens"] for row in continued) == done["usage"]["output_tokens"]
            and sum(row["input_tokens"] for row in continued) == done["usage"]["input_tokens"]
        )

    cut_request = await chat_request_id(stack.database_url, cut.events[-1]["message_id"])
    await eventually(every_call_summed)


async def chat_request_id(database_url: str, message_id: str) -> str:
    """The request id of the call that made a stored reply."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            parent = (
                await conn.execute(select(ChatMessage.parent_id).where(ChatMessage.id == message_id))
            ).scalar_one()
            request_id: str = (
                await conn.execute(select(ChatMessage.request_id).where(ChatMessage.id == parent))
            ).scalar_one()
    finally:
        await engine.dispose()
    return request_id
