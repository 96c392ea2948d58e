"""Tool loops through the in-process client: ``client.beta.messages.tool_runner`` with SDK-described tools,
against the simulator (which calls every tool a user turn names, in one reply, and answers once it has the
results)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types.beta import BetaMessage

from claudegate import AsyncClient, Client
from claudegate.client import ToolLoopLimitError
from tests.e2e.test_inprocess_client import client_settings, usage_rows

MODEL = "claude-sonnet-4-6"


@pytest.fixture
async def client(simulator_url: str, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(settings=client_settings(simulator_url, tmp_path), org="tools") as client:
        yield client


def database(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'claudegate.db'}"


def tool_results(messages: list[Any]) -> list[dict[str, Any]]:
    return [
        block
        for message in messages
        if message["role"] == "user" and isinstance(message["content"], list)
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]


async def test_a_three_tool_loop_runs_the_tools_concurrently_and_ends(
    client: AsyncClient, tmp_path: Path
) -> None:
    # Each tool waits for the other two: run one after another, the first would wait for ever (and the
    # guard below turns that into a failed tool, not a hung test).
    barrier = asyncio.Barrier(3)

    class Together:
        async def wait(self) -> None:
            async with asyncio.timeout(10):
                await barrier.wait()

    all_started = Together()

    @anthropic.beta_async_tool
    async def get_weather(city: str) -> str:
        """The weather in a city.

        Args:
            city: The city's name.
        """
        await all_started.wait()
        return f"Sunny in {city}"

    @anthropic.beta_async_tool
    async def get_time(city: str) -> str:
        """The local time in a city.

        Args:
            city: The city's name.
        """
        await all_started.wait()
        return "12:00"

    @anthropic.beta_async_tool
    async def get_news(topic: str) -> str:
        """Today's headline on a topic.

        Args:
            topic: What the news is about.
        """
        await all_started.wait()
        return "All quiet"

    runner = client.beta.messages.tool_runner(
        model=MODEL,
        max_tokens=500,
        tools=[get_weather, get_time, get_news],
        messages=[{"role": "user", "content": "Use get_weather, get_time and get_news for Paris."}],
    )
    replies = [message async for message in runner]
    assert [reply.stop_reason for reply in replies] == ["tool_use", "end_turn"]
    assert isinstance(replies[-1], BetaMessage)
    results = tool_results(runner.messages)
    assert sorted(result["content"][:5] for result in results) == ["12:00", "All q", "Sunny"]
    assert not any(result.get("is_error") for result in results)
    rows = await usage_rows(database(tmp_path), "tools", 2)
    assert {row["loop_id"] for row in rows} == {runner.loop_id}
    services = await client.open()
    depth = services.metrics.registry.get_sample_value("claudegate_tool_loop_depth_sum", {"outcome": "done"})
    assert depth == 2


async def test_a_loop_past_its_cap_ends_with_the_conversation_so_far(client: AsyncClient) -> None:
    calls = 0

    @anthropic.beta_async_tool
    async def lookup(query: str) -> str:
        """Look something up.

        Args:
            query: What to look up.
        """
        nonlocal calls
        calls += 1
        return "nothing found"

    runner = client.beta.messages.tool_runner(
        model=MODEL,
        max_tokens=300,
        tools=[lookup],
        tool_choice={"type": "any"},  # the model asks for the tool every turn
        max_iterations=3,
        messages=[{"role": "user", "content": "Find it."}],
    )
    with pytest.raises(ToolLoopLimitError) as raised:
        await runner.until_done()
    error = raised.value
    assert "3 model calls" in str(error)
    assert calls == 3
    assert runner.iteration_count == 3
    roles = [message["role"] for message in error.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert error.last_message.stop_reason == "tool_use"


async def test_a_tool_that_raises_is_reported_to_the_model_as_an_error(client: AsyncClient) -> None:
    @anthropic.beta_async_tool
    async def get_weather(city: str) -> str:
        """The weather in a city.

        Args:
            city: The city's name.
        """
        raise ConnectionError("the weather service is down")

    runner = client.beta.messages.tool_runner(
        model=MODEL,
        max_tokens=300,
        tools=[get_weather],
        messages=[{"role": "user", "content": "Use get_weather for Oslo."}],
    )
    final = await runner.until_done()
    assert final.stop_reason == "end_turn"
    (result,) = tool_results(runner.messages)
    assert result["is_error"] is True
    assert result["content"] == "Error: ConnectionError: the weather service is down"


async def test_a_tool_input_that_breaks_the_schema_never_reaches_the_function(client: AsyncClient) -> None:
    ran = False

    class StrictTool:
        """A tool whose schema the model's input does not meet (the simulator is told to call it with
        {"city": "Rome"}, which the pattern refuses): the function must not run."""

        name = "get_weather"

        def to_dict(self) -> dict[str, Any]:
            return {
                "name": self.name,
                "description": "The weather.",
                "input_schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "pattern": "^[0-9]{5}$"}},
                    "required": ["city"],
                },
            }

        async def call(self, input: object) -> str:
            nonlocal ran
            ran = True
            return "ran"

    runner = client.beta.messages.tool_runner(
        model=MODEL,
        max_tokens=300,
        tools=[StrictTool()],
        messages=[{"role": "user", "content": "Use get_weather for Rome."}],
        extra_headers={"x-simulator-tool-input": '{"city": "Rome"}'},
    )
    await runner.until_done()
    (result,) = tool_results(runner.messages)
    assert result["is_error"] is True
    assert result["content"].startswith("Error: invalid input for tool 'get_weather': ")
    assert "does not match" in result["content"]
    assert not ran


def test_the_sync_client_runs_a_tool_loop_with_sync_tools(simulator_url: str, tmp_path: Path) -> None:
    threads: set[str] = set()

    @anthropic.beta_tool
    def get_weather(city: str) -> str:
        """The weather in a city.

        Args:
            city: The city's name.
        """
        threads.add(threading.current_thread().name)
        return f"Rain in {city}"

    with Client(settings=client_settings(simulator_url, tmp_path), org="tools-sync") as client:
        runner = client.beta.messages.tool_runner(
            model=MODEL,
            max_tokens=300,
            tools=[get_weather],
            messages=[{"role": "user", "content": "Use get_weather for Lima."}],
        )
        final = runner.until_done()
    assert final.stop_reason == "end_turn"
    (result,) = tool_results(runner.messages)
    assert result["content"].startswith("Rain in ")
    assert threading.current_thread().name not in threads  # a worker thread ran it


async def test_a_streamed_three_tool_loop_yields_each_turn_as_a_stream_to_its_end(
    client: AsyncClient, tmp_path: Path
) -> None:
    barrier = asyncio.Barrier(3)  # as above: the three tools only finish if they run together

    async def together() -> None:
        async with asyncio.timeout(10):
            await barrier.wait()

    @anthropic.beta_async_tool
    async def get_weather(city: str) -> str:
        """The weather in a city.

        Args:
            city: The city's name.
        """
        await together()
        return f"Sunny in {city}"

    @anthropic.beta_async_tool
    async def get_time(city: str) -> str:
        """The local time in a city.

        Args:
            city: The city's name.
        """
        await together()
        raise TimeoutError("the clock service timed out")

    @anthropic.beta_async_tool
    async def get_news(topic: str) -> str:
        """Today's headline on a topic.

        Args:
            topic: What the news is about.
        """
        await together()
        return "All quiet"

    runner = client.beta.messages.tool_runner(
        model=MODEL,
        max_tokens=500,
        tools=[get_weather, get_time, get_news],
        messages=[{"role": "user", "content": "Use get_weather, get_time and get_news for Paris."}],
        stream=True,
    )
    event_types: list[list[str]] = []
    async for stream in runner:
        event_types.append([event.type async for event in stream])
    final = await runner.until_done()
    assert final.stop_reason == "end_turn"
    assert isinstance(final, BetaMessage)
    assert len(event_types) == 2
    assert event_types[0][0] == "message_start"
    assert event_types[0][-1] == "message_stop"
    assert "input_json" in event_types[0]  # the tool calls' inputs arrive as they stream
    assert "text" in event_types[1]
    results = tool_results(runner.messages)
    assert len(results) == 3
    failed = [result for result in results if result.get("is_error")]
    assert [result["content"] for result in failed] == ["Error: TimeoutError: the clock service timed out"]
    assert sorted(result["content"][:5] for result in results if not result.get("is_error")) == [
        "All q",
        "Sunny",
    ]
    rows = await usage_rows(database(tmp_path), "tools", 2)
    assert {row["loop_id"] for row in rows} == {runner.loop_id}


async def test_a_streamed_loop_keeps_the_cap_and_reads_what_its_caller_left_unread(
    client: AsyncClient,
) -> None:
    @anthropic.beta_async_tool
    async def lookup(query: str) -> str:
        """Look something up.

        Args:
            query: What to look up.
        """
        return "nothing found"

    runner = client.beta.messages.tool_runner(
        model=MODEL,
        max_tokens=300,
        tools=[lookup],
        tool_choice={"type": "any"},
        max_iterations=2,
        messages=[{"role": "user", "content": "Find it."}],
        stream=True,
    )
    with pytest.raises(ToolLoopLimitError) as raised:
        async for _stream in runner:
            pass  # nothing read: the runner reads each reply to its end itself
    assert runner.iteration_count == 2
    assert [message["role"] for message in raised.value.messages] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]


def test_the_sync_client_streams_a_tool_loop(simulator_url: str, tmp_path: Path) -> None:
    @anthropic.beta_tool
    def get_weather(city: str) -> str:
        """The weather in a city.

        Args:
            city: The city's name.
        """
        return f"Rain in {city}"

    with Client(settings=client_settings(simulator_url, tmp_path), org="tools-sync") as client:
        runner = client.beta.messages.tool_runner(
            model=MODEL,
            max_tokens=300,
            tools=[get_weather],
            messages=[{"role": "user", "content": "Use get_weather for Lima."}],
            stream=True,
        )
        texts = ["".join(stream.text_stream) for stream in runner]
        final = runner.until_done()
    assert final.stop_reason == "end_turn"
    assert len(texts) == 2
    assert texts[-1]
    assert texts[-1] == "".join(b.text for b in final.content if b.type == "text")
    (result,) = tool_results(runner.messages)
    assert result["content"].startswith("Rain in ")
