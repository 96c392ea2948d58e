"""The shared tokenizer, and the simulator's promise built on it: a reply counts to its output_tokens."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from claudegate.simulator.engine import SimulatorEngine
from claudegate.simulator.generation import _WORDS
from claudegate.simulator.settings import SimulatorSettings
from claudegate.wire.tokens import count_text_tokens, count_value_tokens, token_pieces

ENGINE = SimulatorEngine(SimulatorSettings())


def test_counts_of_small_examples() -> None:
    assert count_text_tokens("") == 0
    assert count_text_tokens("Hello") == 1
    assert count_text_tokens("Hello, world!") == 4
    assert count_text_tokens("internationalisation") == 3  # at most eight letters per token
    assert count_text_tokens("12345") == 2  # at most three digits per token
    assert count_text_tokens("snake_case") == 3
    assert count_value_tokens({"a": 1}) == count_text_tokens('{"a":1}')


@given(st.text())
def test_tokens_joined_give_the_text_back(text: str) -> None:
    pieces = token_pieces(text)
    assert "".join(pieces) == text
    assert count_text_tokens(text) == len(pieces)
    assert all(pieces)


@given(st.lists(st.text(), max_size=8))
def test_counting_pieces_of_tokens_again_gives_the_same_count(texts: list[str]) -> None:
    pieces = [piece for text in texts for piece in token_pieces(text)]
    assert count_text_tokens("".join(pieces)) <= len(pieces)  # joining can merge, never split


def test_every_reply_word_is_one_token_with_or_without_its_space() -> None:
    for word in _WORDS:
        assert (
            count_text_tokens(word)
            == count_text_tokens(" " + word)
            == count_text_tokens(word.capitalize())
            == 1
        )


def _plan(body: dict[str, Any], reply_tokens: int | None = None) -> Any:
    prepared = ENGINE.prepare(orjson.dumps(body), count_only=False, reply_tokens=reply_tokens)
    assert prepared.plan is not None
    return prepared.plan


def _block_tokens(plan: Any) -> int:
    return sum(count_text_tokens(block.text) for block in plan.blocks)


@settings(max_examples=150, deadline=None)
@given(
    question=st.text(min_size=1, max_size=300).filter(lambda t: t.strip()),
    max_tokens=st.integers(min_value=1, max_value=400),
    reply_tokens=st.one_of(st.none(), st.integers(min_value=0, max_value=500)),
    thinking=st.booleans(),
    stop=st.one_of(st.none(), st.sampled_from([" the", ".", " cache", "\n\n"])),
)
def test_a_generated_reply_counts_to_its_output_tokens(
    question: str, max_tokens: int, reply_tokens: int | None, thinking: bool, stop: str | None
) -> None:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": question}],
    }
    if thinking:
        body["max_tokens"] = max_tokens + 1024
        body["thinking"] = {"type": "enabled", "budget_tokens": 1024}
    if stop:
        body["stop_sequences"] = [stop]
    plan = _plan(body, reply_tokens)

    assert plan.output_tokens == _block_tokens(plan)
    assert plan.output_tokens == sum(len(block.pieces) for block in plan.blocks)  # what a stream counts
    assert plan.output_tokens <= body["max_tokens"]
    if plan.stop_reason == "max_tokens":
        assert plan.output_tokens == body["max_tokens"]
    if reply_tokens is not None and plan.stop_reason == "end_turn":
        assert count_text_tokens(plan.blocks[-1].text) == reply_tokens
    if plan.stop_reason == "stop_sequence":
        assert plan.stop_sequence == stop
        assert stop not in plan.blocks[-1].text


@settings(max_examples=60, deadline=None)
@given(names=st.lists(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), min_size=1, max_size=5, unique=True))
def test_streamed_tool_input_is_the_tool_input(names: list[str]) -> None:
    schema = {"type": "object", "properties": {n: {"type": "string"} for n in names}, "required": names}
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 4000,
        "tools": [{"name": "the_tool", "input_schema": schema}],
        "tool_choice": {"type": "any"},
        "messages": [{"role": "user", "content": "go"}],
    }
    plan = _plan(body)
    (tool_use,) = [block for block in plan.blocks if block.kind == "tool_use"]
    assert orjson.loads("".join(tool_use.pieces)) == tool_use.tool_input
    assert set(tool_use.tool_input) == set(names)
    assert plan.output_tokens == _block_tokens(plan)
