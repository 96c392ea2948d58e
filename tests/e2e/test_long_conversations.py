"""Long conversations through the in-process client: a reply cut by ``max_tokens`` continued to its end, and
a conversation of hundreds of turns kept inside its context window by compaction into a summary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from claudegate import AsyncClient
from tests.e2e.test_inprocess_client import client_settings, usage_rows

MODEL = "claude-sonnet-4-6"
# The simulator writes a 30-token answer; at 12 tokens a call, it is cut twice.
THIRTY_TOKENS = {"x-simulator-reply-tokens": "30"}
QUESTION = [{"role": "user", "content": "Tell me about the sea."}]


@pytest.fixture
async def client(simulator_url: str, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(settings=client_settings(simulator_url, tmp_path), org="long") as client:
        yield client


async def test_a_reply_cut_twice_by_max_tokens_is_continued_to_its_end(
    client: AsyncClient, tmp_path: Path
) -> None:
    cut = await client.messages.create(
        model=MODEL,
        max_tokens=12,
        messages=QUESTION,  # type: ignore[arg-type]
        extra_headers=THIRTY_TOKENS,
    )
    assert cut.stop_reason == "max_tokens"

    whole = await client.messages.create_continued(
        model=MODEL, max_tokens=12, messages=QUESTION, extra_headers=THIRTY_TOKENS
    )
    assert whole.stop_reason == "end_turn"
    assert len(whole.content) == 1
    text = whole.content[0].text  # type: ignore[union-attr]
    assert text.startswith(cut.content[0].text.rstrip())  # type: ignore[union-attr]
    assert text.endswith(".")
    rows = await usage_rows(f"sqlite+aiosqlite:///{tmp_path / 'claudegate.db'}", "long", 4)
    continued = sorted(rows, key=lambda row: row["created_at"])[1:]
    assert [row["output_tokens"] for row in continued] == [12, 12, 6]
    assert whole.usage.output_tokens == 30
    assert whole.usage.input_tokens == sum(row["input_tokens"] for row in continued)


async def test_continuation_stops_after_its_limit(client: AsyncClient) -> None:
    partial = await client.messages.create_continued(
        model=MODEL, max_tokens=12, messages=QUESTION, extra_headers=THIRTY_TOKENS, max_continuations=1
    )
    assert partial.stop_reason == "max_tokens"
    assert partial.usage.output_tokens == 24


async def test_a_300_turn_conversation_stays_inside_its_context_window(
    client: AsyncClient, tmp_path: Path
) -> None:
    window = 4000
    conversation = client.conversation(
        model=MODEL, max_tokens=200, context_window=window, system="You are a patient tutor."
    )
    for turn in range(300):
        reply = await conversation.send(f"Turn {turn}: tell me one more thing about tides and the moon.")
        assert reply.usage.input_tokens + 200 <= conversation.threshold
    assert conversation.compactions >= 3
    assert conversation.summary
    assert len(conversation.messages) < 100
    assert conversation.messages[0]["role"] == "user"
    # The summary rides in the system prompt of every later call; the summaries were the cheap model's.
    assert conversation.system_prompt is not None
    assert conversation.system_prompt.startswith("You are a patient tutor.")
    assert conversation.system_prompt.endswith(conversation.summary)
    calls = 300 + conversation.compactions
    rows = await usage_rows(f"sqlite+aiosqlite:///{tmp_path / 'claudegate.db'}", "long", calls)
    assert len(rows) == calls
    summaries = [row for row in rows if row["model"] != MODEL]
    assert len(summaries) == conversation.compactions
    assert {row["model"] for row in summaries} == {"claude-haiku-4-5-20251001"}
