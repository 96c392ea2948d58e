"""Tool loops: ``client.beta.messages.tool_runner(...)``, the official SDK's tool-runner interface run through
claudegate's pipeline.

Give it functions described by ``anthropic.beta_tool`` / ``anthropic.beta_async_tool`` (or any object with
``name``, ``to_dict()`` and ``call(input)``); iterate it for each reply, or ``await runner.until_done()`` for
the last. Each turn the model asks for tools, their calls:

- are checked against the tool's input schema first (jsonschema): a bad input goes back to the model as an
  ``is_error`` result saying what is wrong, and the function does not run;
- run concurrently (async tools on the event loop, sync tools in worker threads);
- that raise go back to the model as ``is_error`` results carrying the exception's message.

With ``stream=True`` (:class:`AsyncStreamingToolRunner`) each turn is yielded as the message stream it
is (``async for stream in runner: async for event in stream``), as the SDK's streaming runner does; the rest
of the stream is read when the loop goes on, and the loop's rules are the same.

The loop makes at most ``max_iterations`` model calls (default: the ``tool_loop_max_iterations`` setting,
5): a model still asking for tools after that ends the loop with :class:`ToolLoopLimitError`, which carries
the conversation so far. Every call of one loop carries its loop id (``runner.loop_id``) into its usage
record; the loop's depth (its model calls) is observed by the ``claudegate_tool_loop_depth`` metric.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import jsonschema
import orjson
from anthropic.lib.tools import ToolError
from anthropic.types.beta import BetaMessage, BetaMessageParam, BetaToolResultBlockParam, BetaToolUseBlock

from claudegate.client._streams import AsyncMessageStream, AsyncMessageStreamManager

__all__ = ["AsyncStreamingToolRunner", "AsyncToolRunner", "RunnableTool", "ToolLoopLimitError"]

logger = logging.getLogger(__name__)

Send = Callable[[list[Any], str], Awaitable[BetaMessage]]
"""Makes one model call of the loop: (messages, loop id) to the reply."""

OpenStream = Callable[[list[Any], str], AsyncMessageStreamManager]
"""Opens one streamed model call of the loop: (messages, loop id) to the stream's manager."""

ItemT = TypeVar("ItemT")

LoopEnded = Callable[[int, str], None]
"""Hears (model calls made, outcome: ``done``, ``limit`` or ``error``) when a loop ends."""


@runtime_checkable
class RunnableTool(Protocol):
    """What the SDK's ``beta_tool`` and ``beta_async_tool`` make."""

    @property
    def name(self) -> str: ...

    def to_dict(self) -> Any: ...

    def call(self, input: object) -> Any: ...


class ToolLoopLimitError(Exception):
    """The model still asked for tools after ``max_iterations`` calls. ``messages`` is the conversation so
    far (the tool results of the last turn included), ``last_message`` the last reply."""

    def __init__(self, max_iterations: int, messages: list[Any], last_message: BetaMessage) -> None:
        super().__init__(
            f"the tool loop made {max_iterations} model calls (its max_iterations) and the model still asks "
            "for tools; raise max_iterations, or continue from this error's messages"
        )
        self.max_iterations = max_iterations
        self.messages = messages
        self.last_message = last_message


class _AsyncToolLoop(Generic[ItemT]):
    """The loop itself; a subclass makes each turn's model call and says what the loop yields for it."""

    def __init__(
        self,
        *,
        messages: Iterable[BetaMessageParam],
        tools: Sequence[RunnableTool | dict[str, Any]],
        max_iterations: int,
        on_end: LoopEnded | None = None,
    ) -> None:
        if max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, got {max_iterations}")
        self.loop_id = "loop_" + uuid.uuid4().hex
        self.max_iterations = max_iterations
        self.iteration_count = 0
        self._messages: list[Any] = list(messages)
        self._runnable = {tool.name: tool for tool in tools if isinstance(tool, RunnableTool)}
        self._on_end = on_end
        self._last: BetaMessage | None = None
        self._iterator: AsyncIterator[ItemT] | None = None

    @property
    def messages(self) -> list[Any]:
        """The conversation so far: the caller's messages, each reply and each turn's tool results."""
        return self._messages

    def append_messages(self, *messages: BetaMessageParam | BetaMessage) -> None:
        """Add messages to the conversation before the next model call."""
        for message in messages:
            if isinstance(message, BetaMessage):
                self._messages.append({"role": message.role, "content": message.content})
            else:
                self._messages.append(message)

    def __aiter__(self) -> AsyncIterator[ItemT]:
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    async def until_done(self) -> BetaMessage:
        """Run the loop to its end; the last reply."""
        async for _message in self:
            pass
        assert self._last is not None
        return self._last

    def _turn(self) -> AsyncIterator[ItemT]:
        """One model call: yields what the caller sees of it, and sets ``_last`` to its reply."""
        raise NotImplementedError

    async def _run(self) -> AsyncIterator[ItemT]:
        outcome = "error"
        try:
            while True:
                if self.iteration_count >= self.max_iterations:
                    assert self._last is not None
                    outcome = "limit"
                    raise ToolLoopLimitError(self.max_iterations, self._messages, self._last)
                async for item in self._turn():
                    yield item
                message = self._last
                assert message is not None
                self._messages.append({"role": "assistant", "content": message.content})
                wants_tools = message.stop_reason == "tool_use"
                results = await self.generate_tool_call_response() if wants_tools else None
                if results is None:
                    outcome = "done"
                    return
                self._messages.append(results)
        finally:
            if self._on_end is not None:
                self._on_end(self.iteration_count, outcome)

    async def generate_tool_call_response(self) -> BetaMessageParam | None:
        """The user turn answering the last reply's tool calls (run concurrently), or None if it has none."""
        if self._last is None:
            return None
        uses = [block for block in self._last.content if isinstance(block, BetaToolUseBlock)]
        if not uses:
            return None
        results = await asyncio.gather(*(self._run_tool(use) for use in uses))
        return {"role": "user", "content": list(results)}

    async def _run_tool(self, use: BetaToolUseBlock) -> BetaToolResultBlockParam:
        tool = self._runnable.get(use.name)
        if tool is None:
            return _error(use, f"Error: tool {use.name!r} is not one this program runs")
        problem = _input_problem(tool, use.input)
        if problem is not None:
            return _error(use, f"Error: invalid input for tool {use.name!r}: {problem}")
        try:
            if inspect.iscoroutinefunction(tool.call):
                output = await tool.call(use.input)
            else:
                output = await asyncio.to_thread(tool.call, use.input)
        except ToolError as error:
            return {"type": "tool_result", "tool_use_id": use.id, "content": error.content, "is_error": True}
        except Exception as error:  # the tool's failure is the model's to hear about, not the loop's end
            logger.info("tool %s raised %r; the model is told", use.name, error)
            return _error(use, f"Error: {type(error).__name__}: {error}")
        return {"type": "tool_result", "tool_use_id": use.id, "content": _content(output)}


class AsyncToolRunner(_AsyncToolLoop[BetaMessage]):
    """One tool loop: ``async for message in runner`` (each reply), or ``await runner.until_done()``."""

    def __init__(self, send: Send, **loop: Any) -> None:
        super().__init__(**loop)
        self._send = send

    async def _turn(self) -> AsyncIterator[BetaMessage]:
        message = await self._send(self._messages, self.loop_id)
        self.iteration_count += 1
        self._last = message
        yield message


class AsyncStreamingToolRunner(_AsyncToolLoop[AsyncMessageStream]):
    """A tool loop yielding each turn's message stream: ``async for stream in runner``, then ``async for
    event in stream`` (or ``stream.text_stream``); ``await runner.until_done()`` for the last reply."""

    def __init__(self, open_stream: OpenStream, **loop: Any) -> None:
        super().__init__(**loop)
        self._open_stream = open_stream

    async def _turn(self) -> AsyncIterator[AsyncMessageStream]:
        async with self._open_stream(self._messages, self.loop_id) as stream:
            self.iteration_count += 1
            yield stream
            final = await stream.get_final_message()  # whatever the caller left unread
        self._last = BetaMessage.model_validate(final.model_dump())


def _input_problem(tool: RunnableTool, tool_input: Any) -> str | None:
    """What is wrong with a tool call's input against the tool's schema, or None."""
    schema = tool.to_dict().get("input_schema")
    if not isinstance(schema, dict):
        return None
    validator_class = jsonschema.validators.validator_for(schema)
    error = jsonschema.exceptions.best_match(validator_class(schema).iter_errors(tool_input))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{error.message}" + (f" (at {where})" if where else "")


def _error(use: BetaToolUseBlock, message: str) -> BetaToolResultBlockParam:
    return {"type": "tool_result", "tool_use_id": use.id, "content": message, "is_error": True}


def _content(output: object) -> Any:
    """A tool's return value as tool_result content: text as is, content blocks as given, else JSON."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return output
    return orjson.dumps(output, default=str).decode()
