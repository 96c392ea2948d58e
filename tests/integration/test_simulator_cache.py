"""Prompt caching as the SDK reports it: writes, reads, minimum length, TTLs, breakpoints, automatic mode."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.integration.simulator_support import CACHE_MODEL, prose, sync_client, unique_key

EPHEMERAL = {"type": "ephemeral"}


@pytest.fixture
def client(simulator_url: str) -> Iterator[anthropic.Anthropic]:
    """A client with a key of its own: caches are private to a key, so tests cannot see each other's."""
    with sync_client(simulator_url, api_key=unique_key()) as sdk:
        yield sdk


def ask(client: anthropic.Anthropic, question: str, **request: Any) -> anthropic.types.Message:
    return client.messages.create(
        model=CACHE_MODEL, max_tokens=50, messages=[{"role": "user", "content": question}], **request
    )


def total_input(usage: anthropic.types.Usage) -> int:
    return (
        usage.input_tokens + (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
    )


def test_cached_system_prompt_is_written_once_then_read(client: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": prose(1500), "cache_control": EPHEMERAL}]
    first = ask(client, "First question?", system=system).usage
    second = ask(client, "A different, second question?", system=system).usage

    assert first.cache_creation_input_tokens is not None
    assert first.cache_creation_input_tokens >= 1500
    assert first.cache_read_input_tokens == 0
    assert first.input_tokens < 30  # only the uncached question and framing
    assert first.cache_creation is not None
    assert first.cache_creation.ephemeral_5m_input_tokens == first.cache_creation_input_tokens
    assert first.cache_creation.ephemeral_1h_input_tokens == 0

    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0
    assert second.input_tokens < 30

    counted = client.messages.count_tokens(
        model=CACHE_MODEL,
        system=system,
        messages=[{"role": "user", "content": "First question?"}],
    )
    assert total_input(first) == counted.input_tokens  # count_tokens ignores the cache


def test_a_prefix_below_the_minimum_is_not_cached(client: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": prose(600), "cache_control": EPHEMERAL}]  # Sonnet 5 minimum: 1024
    for question in ("One?", "Two?"):
        usage = ask(client, question, system=system).usage
        assert usage.cache_creation_input_tokens == 0
        assert usage.cache_read_input_tokens == 0
        assert usage.input_tokens > 600


def test_changing_the_prefix_misses_the_cache(client: anthropic.Anthropic) -> None:
    ask(client, "Q", system=[{"type": "text", "text": prose(1500), "cache_control": EPHEMERAL}])
    changed = ask(
        client, "Q", system=[{"type": "text", "text": prose(1501), "cache_control": EPHEMERAL}]
    ).usage
    assert changed.cache_read_input_tokens == 0
    assert changed.cache_creation_input_tokens is not None
    assert changed.cache_creation_input_tokens > 1500


def test_caches_are_private_to_an_api_key(simulator_url: str) -> None:
    system = [{"type": "text", "text": prose(1500), "cache_control": EPHEMERAL}]
    with (
        sync_client(simulator_url, api_key=unique_key()) as one,
        sync_client(simulator_url, api_key=unique_key()) as two,
    ):
        assert ask(one, "Q", system=system).usage.cache_creation_input_tokens
        assert ask(two, "Q", system=system).usage.cache_read_input_tokens == 0


def test_one_hour_ttl_is_reported_in_usage(client: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": prose(1500), "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    usage = ask(client, "Q", system=system).usage
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_1h_input_tokens == usage.cache_creation_input_tokens
    assert usage.cache_creation.ephemeral_1h_input_tokens >= 1500
    assert usage.cache_creation.ephemeral_5m_input_tokens == 0


def test_one_hour_and_five_minute_breakpoints_split_the_write(client: anthropic.Anthropic) -> None:
    system = [
        {"type": "text", "text": prose(1200), "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": prose(800), "cache_control": {"type": "ephemeral", "ttl": "5m"}},
    ]
    usage = ask(client, "Q", system=system).usage
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_1h_input_tokens >= 1200
    assert usage.cache_creation.ephemeral_5m_input_tokens == 800
    with pytest.raises(anthropic.BadRequestError, match=r"ttl='1h'.*must not come after"):
        ask(client, "Q", system=list(reversed(system)))


def test_five_breakpoints_are_refused(client: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": f"part {i}", "cache_control": EPHEMERAL} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError, match="A maximum of 4 blocks with cache_control"):
        ask(client, "Q", system=system)


def test_automatic_caching_follows_a_growing_conversation(client: anthropic.Anthropic) -> None:
    turns: list[Any] = [{"role": "user", "content": prose(1500)}]
    first = client.messages.create(model=CACHE_MODEL, max_tokens=30, messages=turns, cache_control=EPHEMERAL)
    assert first.usage.cache_creation_input_tokens is not None
    assert first.usage.cache_creation_input_tokens >= 1500
    assert first.usage.input_tokens < 10  # the breakpoint moved to the last block: only framing is uncached

    turns += [{"role": "assistant", "content": first.content}, {"role": "user", "content": "And then?"}]
    second = client.messages.create(model=CACHE_MODEL, max_tokens=30, messages=turns, cache_control=EPHEMERAL)
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens is not None
    assert second.usage.cache_creation_input_tokens > 0

    four = [{"type": "text", "text": f"part {i}", "cache_control": EPHEMERAL} for i in range(4)]
    with pytest.raises(anthropic.BadRequestError, match="automatic caching"):
        client.messages.create(
            model=CACHE_MODEL, max_tokens=30, system=four, messages=turns, cache_control=EPHEMERAL
        )


def test_cached_tools_and_message_blocks(client: anthropic.Anthropic) -> None:
    tools = [
        {
            "name": "lookup",
            "description": prose(1200),
            "input_schema": {"type": "object"},
            "cache_control": EPHEMERAL,
        }
    ]
    first = ask(client, "Q1", tools=tools).usage
    assert first.cache_creation_input_tokens is not None
    assert first.cache_creation_input_tokens >= 1200
    assert ask(client, "Q2", tools=tools).usage.cache_read_input_tokens == first.cache_creation_input_tokens

    block = {"type": "text", "text": prose(1300), "cache_control": EPHEMERAL}
    one = client.messages.create(
        model=CACHE_MODEL, max_tokens=20, messages=[{"role": "user", "content": [block]}]
    )
    two = client.messages.create(
        model=CACHE_MODEL,
        max_tokens=20,
        messages=[{"role": "user", "content": [block, {"type": "text", "text": "more"}]}],
    )
    assert one.usage.cache_creation_input_tokens == two.usage.cache_read_input_tokens


def test_streamed_usage_carries_the_cache_figures(client: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": prose(1500), "cache_control": EPHEMERAL}]
    ask(client, "Warm up", system=system)
    with client.messages.stream(
        model=CACHE_MODEL,
        max_tokens=50,
        system=system,
        messages=[{"role": "user", "content": "Streamed?"}],
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    start = next(e for e in events if e.type == "message_start")
    assert start.message.usage.cache_read_input_tokens == final.usage.cache_read_input_tokens >= 1500
    assert final.usage.cache_creation_input_tokens == 0
