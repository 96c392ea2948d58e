"""A long chat through the chat API stays inside its budget: older turns are compacted into a summary by the
cheaper model, the summary is stored with the conversation and sent with every later turn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from claudegate.store import upgrade_database
from claudegate.store._engine import create_engine
from claudegate.store.tables import Conversation, UsageRow
from tests.e2e.chat_support import ChatClient, eventually, make_chat_tenant
from tests.e2e.conftest import GatewayServer, gateway_settings
from tests.servers import running_in_thread

BUDGET = 3000  # chat_history_tokens: far below any model's window, so a test conversation passes it


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"


@pytest.fixture
def gateway_url(simulator_url: str, database_url: str, tmp_path: Path) -> Iterator[str]:
    settings = gateway_settings(simulator_url, database_url, tmp_path).model_copy(
        update={"chat_history_tokens": BUDGET}
    )
    with running_in_thread(lambda: GatewayServer(settings)) as server:
        assert isinstance(server, GatewayServer)
        yield server.url


async def test_a_300_turn_chat_keeps_a_stored_summary_and_stays_inside_its_budget(
    database_url: str, gateway_url: str
) -> None:
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
