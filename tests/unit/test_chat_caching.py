"""Automatic cache breakpoints: where they go, that there are never more than four, that the stored history
is left untouched, and that a conversation built with them reads its prefix from the simulator's cache."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from claudegate.chat.caching import place_breakpoints, system_blocks
from claudegate.simulator.cache import PromptCache
from claudegate.simulator.prompt import analyse_prompt
from claudegate.wire.models import default_catalog

MODEL = default_catalog().resolve("claude-sonnet-4-6")
assert MODEL is not None
EPHEMERAL = {"type": "ephemeral"}
TOOL = {"name": "lookup", "description": "Look up", "input_schema": {"type": "object", "properties": {}}}


def text(value: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": value}]


def conversation(turns: int, new: str = "next?") -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for index in range(turns):
        messages.append({"role": "user", "content": text(f"question {index}")})
        messages.append({"role": "assistant", "content": text(f"answer {index}")})
    messages.append({"role": "user", "content": text(new)})
    return messages


def marked(body: dict[str, Any]) -> list[str]:
    """Where the body carries cache_control, as 'tools', 'system' or 'messages.I'."""
    where = [f"tools.{i}" for i, tool in enumerate(body.get("tools") or []) if "cache_control" in tool]
    where += ["system" for block in body.get("system") or [] if "cache_control" in block]
    for index, message in enumerate(body["messages"]):
        if any("cache_control" in block for block in message["content"]):
            where.append(f"messages.{index}")
    return where


def test_tools_system_previous_turn_and_new_message() -> None:
    body = {
        "tools": [TOOL, {**TOOL, "name": "other"}],
        "system": system_blocks("Be brief."),
        "messages": conversation(3),
    }
    placed = place_breakpoints(body)
    assert placed == ["previous_turn", "system", "tools", "new_message"]
    assert marked(body) == ["tools.1", "system", "messages.5", "messages.6"]
    assert body["system"][-1]["cache_control"] == EPHEMERAL


def test_first_turn_has_no_previous_turn() -> None:
    body = {"system": system_blocks("Be brief."), "messages": conversation(0)}
    assert place_breakpoints(body) == ["system", "new_message"]
    assert marked(body) == ["system", "messages.0"]


def test_never_more_than_four_counting_those_already_there() -> None:
    messages = conversation(4)
    messages[0]["content"][0]["cache_control"] = EPHEMERAL
    messages[2]["content"][0]["cache_control"] = EPHEMERAL
    body = {"tools": [TOOL], "system": system_blocks("S"), "messages": messages}
    assert place_breakpoints(body) == ["previous_turn", "system"]
    assert len(marked(body)) == 4
    analyse_prompt({"model": MODEL.id, "max_tokens": 5, **body}, MODEL, max_tokens=5)  # the API accepts it


def test_the_stored_history_is_not_changed() -> None:
    history = conversation(2)
    before = copy.deepcopy(history)
    body = {"system": "Plain string system prompt", "messages": history}
    place_breakpoints(body)
    assert history == before
    assert body["system"] == [
        {"type": "text", "text": "Plain string system prompt", "cache_control": EPHEMERAL}
    ]


def test_the_system_prompt_is_byte_identical_on_every_turn() -> None:
    systems = set()
    for turns in range(5):
        body = {
            "system": system_blocks("You are a helpful assistant. " * 50),
            "messages": conversation(turns),
        }
        place_breakpoints(body)
        systems.add(orjson.dumps(body["system"]))
    assert len(systems) == 1


def test_thinking_and_empty_blocks_are_not_marked() -> None:
    messages = conversation(1)
    messages[1]["content"] = [
        {"type": "text", "text": "answer"},
        {"type": "thinking", "thinking": "t", "signature": "s"},
    ]
    body = {"messages": messages}
    place_breakpoints(body, cache_new_message=False)
    assert body["messages"][1]["content"][0]["cache_control"] == EPHEMERAL
    assert "cache_control" not in body["messages"][1]["content"][1]


@pytest.mark.parametrize("ttl", [None, "1h"])
def test_ttl(ttl: str | None) -> None:
    body = {"system": system_blocks("S"), "messages": conversation(1)}
    place_breakpoints(body, ttl=ttl)
    expected = EPHEMERAL if ttl is None else {"type": "ephemeral", "ttl": ttl}
    assert body["system"][0]["cache_control"] == expected


def test_a_long_conversation_reads_its_prefix_from_the_cache() -> None:
    """Twenty turns through the simulator's cache accounting: from the second turn on, everything but the
    last reply and the new question is read from the cache."""
    cache = PromptCache(clock=lambda: 0.0)
    system = "You are the support assistant of a large shop. " * 250  # over Sonnet 4.6's 2,048-token minimum
    messages: list[dict[str, Any]] = []
    reads = []
    for turn in range(20):
        messages.append(
            {"role": "user", "content": text(f"Question {turn}: where is my order number {turn}?")}
        )
        body = {
            "model": MODEL.id,
            "max_tokens": 50,
            "system": system_blocks(system),
            "messages": list(messages),
        }
        place_breakpoints(body)
        prompt = analyse_prompt(body, MODEL, max_tokens=50)
        usage = cache.apply("key", prompt, MODEL.min_cache_tokens)
        total = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
        reads.append(usage.cache_read_input_tokens / total)
        messages.append({"role": "assistant", "content": text(f"Answer {turn}: it ships tomorrow, " * 5)})
    assert reads[0] == 0
    assert min(reads[1:]) > 0.85
