"""History trimming: the most recent turns within the budget, in steps that keep the cached prefix stable,
and never a tool_result without the tool_use it answers."""

from __future__ import annotations

from typing import Any

import pytest

from claudegate.chat.history import HistoryMessage, block_tokens, content_tokens, history_start
from claudegate.simulator.prompt import analyse_prompt
from claudegate.wire.models import default_catalog
from claudegate.wire.tokens import REQUEST_OVERHEAD_TOKENS


def turns(count: int, tokens: int = 10) -> list[HistoryMessage]:
    """``count`` question/answer pairs of ``tokens`` tokens each message."""
    history = []
    for index in range(count):
        history.append(HistoryMessage("user", [{"type": "text", "text": f"q{index}"}], tokens))
        history.append(HistoryMessage("assistant", [{"type": "text", "text": f"a{index}"}], tokens))
    return history


def test_everything_is_sent_while_it_fits() -> None:
    assert history_start(turns(5), budget=1000, new_tokens=10) == 0


def test_nothing_but_the_new_message_when_nothing_fits() -> None:
    assert history_start(turns(3), budget=5, new_tokens=10) == 6
    assert history_start([], budget=5, new_tokens=10) == 0


def test_with_step_one_the_most_recent_turns_that_fit_are_sent() -> None:
    # 10 turns of 20 tokens; budget 100 with a new message of 10 leaves room for 4 turns (80 tokens).
    start = history_start(turns(10), budget=100, new_tokens=10, step=1)
    assert start == 12  # turns 6..9


def test_the_start_moves_in_steps_so_the_prefix_stays_put() -> None:
    budget = 100  # room for four 20-token turns beside a 10-token question
    starts = []
    for count in range(1, 16):
        starts.append(history_start(turns(count), budget=budget, new_tokens=10, step=4))
    turn_starts = [start // 2 for start in starts]
    # It starts at turn 0 and afterwards only ever at a multiple of four turns, never going back.
    assert turn_starts == sorted(turn_starts)
    assert {start % 4 for start in turn_starts} == {0}
    # Between two jumps, several consecutive calls share the same start (and so a cacheable prefix).
    assert max(turn_starts.count(start) for start in set(turn_starts)) >= 3
    # What is sent always fits.
    for count, start in zip(range(1, 16), starts, strict=True):
        assert (count * 2 - start) * 10 + 10 <= budget


def test_falls_back_to_the_earliest_fitting_turn_when_no_step_boundary_fits() -> None:
    history = turns(6)
    history[-1] = HistoryMessage("assistant", [{"type": "text", "text": "long"}], 500)
    # Only the last turn (510 tokens) fits; it is turn 5, not a multiple of 4.
    assert history_start(history, budget=530, new_tokens=10, step=4) == 10


def test_a_tool_result_is_never_sent_without_its_tool_use() -> None:
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
    tool_result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
    history = [
        HistoryMessage("user", [{"type": "text", "text": "old"}], 100),
        HistoryMessage("assistant", [{"type": "text", "text": "old answer"}], 100),
        HistoryMessage("user", [{"type": "text", "text": "weather?"}], 10),
        HistoryMessage("assistant", [tool_use], 30),
        HistoryMessage("user", [tool_result], 10),
        HistoryMessage("assistant", [{"type": "text", "text": "It is sunny."}], 10),
    ]
    # 30 tokens fit the last two messages, which would start with the tool_result: not allowed. The start
    # goes back to the question that began the tool exchange, or sends no history at all.
    for budget in range(0, 400, 5):
        start = history_start(history, budget=budget, new_tokens=0, step=1)
        assert start in (0, 2, len(history))
        if start < len(history):
            assert history[start].role == "user"
            assert all(block["type"] != "tool_result" for block in history[start].content)
    assert history_start(history, budget=60, new_tokens=0, step=1) == 2
    assert history_start(history, budget=59, new_tokens=0, step=1) == len(history)


def test_step_must_be_positive() -> None:
    with pytest.raises(ValueError, match="step"):
        history_start(turns(1), budget=10, step=0)


@pytest.mark.parametrize(
    "content",
    [
        "Hello there, how are you today?",
        [{"type": "text", "text": "Look at this."}, {"type": "text", "text": "And this, 12345."}],
        [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "paris", "n": 3}}],
        [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "found"}]}],
    ],
)
def test_counts_agree_with_the_simulator(content: Any) -> None:
    """The simulator's count of a request made of one message is this module's count, plus the request's
    framing: history budgets use the same tokenizer as the API the tests run against."""
    model = default_catalog().resolve("claude-sonnet-4-6")
    assert model is not None
    messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
    if isinstance(content, list) and content[0]["type"] == "tool_use":
        messages = [{"role": "user", "content": "go"}, {"role": "assistant", "content": content}]
        expected = content_tokens("go") + content_tokens(content)
    elif isinstance(content, list) and content[0]["type"] == "tool_result":
        tool_use = [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}]
        messages = [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": tool_use},
            {"role": "user", "content": content},
        ]
        expected = content_tokens("go") + content_tokens(tool_use) + content_tokens(content)
    else:
        expected = content_tokens(content)
    prompt = analyse_prompt({"messages": messages}, model, max_tokens=10)
    assert prompt.total_tokens == expected + REQUEST_OVERHEAD_TOKENS


def test_block_tokens_ignores_cache_control() -> None:
    block = {"type": "search_result", "source": "s", "title": "t", "content": []}
    assert block_tokens(block) == block_tokens({**block, "cache_control": {"type": "ephemeral"}})
