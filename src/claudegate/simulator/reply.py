"""A planned reply rendered as the API sends it: one JSON message, or the SSE event sequence."""

from __future__ import annotations

import asyncio
import datetime
import random
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from claudegate.simulator.cache import CacheUsage
from claudegate.simulator.faults import error_of_type
from claudegate.simulator.plan import TOOL_KINDS, PlannedBlock, ReplyPlan
from claudegate.simulator.settings import LatencyModel
from claudegate.wire.sse import encode_event

__all__ = [
    "DroppedConnection",
    "ReplyContext",
    "encode_message",
    "message_id",
    "render_message",
    "stream_message",
]


class DroppedConnection(Exception):  # noqa: N818 - it names an event, not a failure of the simulator
    """Raised inside a response to make the server cut the connection (the ``drop_connection`` fault)."""


def message_id() -> str:
    return "msg_01" + secrets.token_hex(11)


@dataclass(slots=True)
class ReplyContext:
    model: str
    cache: CacheUsage
    latency: LatencyModel
    tokens_per_delta: int
    rng: random.Random
    midstream_error: str | None = None  # error type to send half way through a stream
    drop_connection: bool = False
    inference_geo: str = "global"
    speed: str = "standard"

    def usage(self, output_tokens: int, plan: ReplyPlan | None = None) -> dict[str, Any]:
        """The reply's usage; with the ``plan``, the final figures (thinking and server tools included)."""
        usage: dict[str, Any] = {
            "input_tokens": self.cache.input_tokens,
            "cache_creation_input_tokens": self.cache.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache.cache_creation_5m_input_tokens,
                "ephemeral_1h_input_tokens": self.cache.cache_creation_1h_input_tokens,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
            "inference_geo": self.inference_geo,
            "speed": self.speed,
        }
        if plan is not None:
            usage["output_tokens_details"] = {"thinking_tokens": plan.thinking_tokens}
            if plan.server_tools:
                usage["server_tool_use"] = {
                    "web_search_requests": plan.server_requests("web_search"),
                    "web_fetch_requests": plan.server_requests("web_fetch"),
                }
        return usage

    def jittered(self, seconds: float) -> float:
        if seconds <= 0 or self.latency.jitter <= 0:
            return seconds
        return seconds * self.rng.uniform(1 - self.latency.jitter, 1 + self.latency.jitter)

    def generation_seconds(self, tokens: int) -> float:
        rate = self.latency.tokens_per_second
        return self.jittered(tokens / rate) if rate > 0 else 0.0


def render_message(plan: ReplyPlan, ctx: ReplyContext, msg_id: str) -> dict[str, Any]:
    message = _message_frame(plan, ctx, msg_id)
    message["content"] = [block.to_api() for block in plan.blocks]
    return message


def encode_message(plan: ReplyPlan, ctx: ReplyContext, msg_id: str) -> bytes:
    """``render_message`` as JSON bytes, with the plan's content serialised once and reused."""
    if plan.content_json is None:
        plan.content_json = orjson.dumps([block.to_api() for block in plan.blocks])
    message = _message_frame(plan, ctx, msg_id)
    message["content"] = orjson.Fragment(plan.content_json)
    return orjson.dumps(message)


def _message_frame(plan: ReplyPlan, ctx: ReplyContext, msg_id: str) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": None,
        "stop_reason": plan.stop_reason,
        "stop_sequence": plan.stop_sequence,
        "stop_details": plan.stop_details,
        "container": _container(plan),
        "usage": ctx.usage(plan.output_tokens, plan),
    } | _context_management(plan)


def _context_management(plan: ReplyPlan) -> dict[str, Any]:
    return {"context_management": {"applied_edits": []}} if plan.context_management else {}


def _container(plan: ReplyPlan) -> dict[str, Any] | None:
    """The code-execution container a reply used (null otherwise); it lives on for 30 days."""
    container_id = plan.container_id
    if container_id is None:
        return None
    expires = datetime.datetime.now(datetime.UTC) + _CONTAINER_LIFETIME
    return {"id": container_id, "expires_at": expires.isoformat(timespec="seconds").replace("+00:00", "Z")}


def _block_start(block: PlannedBlock) -> dict[str, Any]:
    if block.whole is not None:
        return block.whole  # sent whole: no deltas follow
    if block.kind == "text":
        return {"type": "text", "text": ""}
    if block.kind == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    return {"type": block.kind, "id": block.tool_id, "name": block.tool_name, "input": {}}


def _delta(block: PlannedBlock, text: str) -> dict[str, Any]:
    if block.kind == "text":
        return {"type": "text_delta", "text": text}
    if block.kind == "thinking":
        return {"type": "thinking_delta", "thinking": text}
    return {"type": "input_json_delta", "partial_json": text}


async def stream_message(
    plan: ReplyPlan, ctx: ReplyContext, msg_id: str, on_tokens: Callable[[int], None]
) -> AsyncIterator[bytes]:
    """The SSE events of a reply, paced by the latency model.

    ``on_tokens`` hears how many output tokens have been sent so far, so a client that hangs up is charged
    for what it received. Without latency, events are sent in two writes (the opening events, then the
    rest) rather than one write per event, which keeps the simulator far cheaper than anything it tests.
    A mid-stream fault strikes half way through the content, after at least one delta when there is one.
    """
    start: dict[str, Any] = {"id": msg_id, "type": "message", "role": "assistant", "model": ctx.model}
    start |= {"content": [], "stop_reason": None, "stop_sequence": None, "usage": ctx.usage(1)}
    opening = encode_event("message_start", {"type": "message_start", "message": start})
    paced = not ctx.latency.is_instant
    faulty = ctx.midstream_error is not None or ctx.drop_connection
    step = max(1, ctx.tokens_per_delta)
    if not paced and not faulty:
        # Nothing to wait for and nothing to break: the content events come ready-made with the plan.
        head, rest = _content_events(plan, step)
        yield opening + head
        on_tokens(plan.output_tokens)
        yield rest + _closing_events(plan, ctx)
        return

    pending = [opening]
    fault_at = max(1, sum(len(b.pieces) for b in plan.blocks) // 2) if faulty else -1
    sent_tokens = 0  # every piece is one token

    for index, block in enumerate(plan.blocks):
        pending.append(
            encode_event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": _block_start(block)},
            )
        )
        if index == 0:
            pending.append(encode_event("ping", {"type": "ping"}))
        if block.kind in TOOL_KINDS:
            pending.append(_delta_event(index, block, ""))  # the API opens tool input with an empty delta
        pending += _citation_events(index, block)
        if paced or index == 0:
            yield b"".join(pending)
            pending = []
        for offset in range(0, len(block.pieces), step):
            if sent_tokens >= fault_at >= 0:
                yield b"".join(pending)
                async for chunk in _fault(ctx):
                    yield chunk
                return
            group = block.pieces[offset : offset + step]
            if paced:
                await asyncio.sleep(ctx.generation_seconds(len(group)))
            pending.append(_delta_event(index, block, "".join(group)))
            sent_tokens += len(group)
            on_tokens(sent_tokens)
            if paced:
                yield pending.pop()
        if block.kind == "thinking":
            delta = {"type": "signature_delta", "signature": block.signature}
            pending.append(
                encode_event(
                    "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                )
            )
        pending.append(encode_event("content_block_stop", {"type": "content_block_stop", "index": index}))

    if faulty:  # a reply too short to be cut half way through is cut before it ends
        yield b"".join(pending)
        async for chunk in _fault(ctx):
            yield chunk
        return
    pending.append(_closing_events(plan, ctx))
    on_tokens(plan.output_tokens)
    yield b"".join(pending)


_MESSAGE_STOP = encode_event("message_stop", {"type": "message_stop"})
# message_delta's usage holds the counts that grow during a reply, not what message_start settled.
_NOT_IN_DELTA_USAGE = ("cache_creation", "service_tier", "inference_geo", "speed")
_CONTAINER_LIFETIME = datetime.timedelta(days=30)


def _closing_events(plan: ReplyPlan, ctx: ReplyContext) -> bytes:
    usage = ctx.usage(plan.output_tokens, plan)
    for name in _NOT_IN_DELTA_USAGE:
        del usage[name]
    stop: dict[str, Any] = {"stop_reason": plan.stop_reason, "stop_sequence": plan.stop_sequence}
    if plan.stop_details is not None:  # the documented stream has no stop_details when there are none
        stop["stop_details"] = plan.stop_details
    container = _container(plan)
    if container is not None:
        stop["container"] = container
    delta = {"type": "message_delta", "delta": stop, "usage": usage} | _context_management(plan)
    return encode_event("message_delta", delta) + _MESSAGE_STOP


def _content_events(plan: ReplyPlan, step: int) -> tuple[bytes, bytes]:
    """Every event between message_start and message_delta, split after the first block's opening (and the
    ping), in the order and grouping of the paced path. They depend on the plan alone: encoded once."""
    found = plan.sse_content.get(step)
    if found is not None:
        return found
    head: list[bytes] = []
    rest: list[bytes] = []
    for index, block in enumerate(plan.blocks):
        out = head if index == 0 else rest
        start = {"type": "content_block_start", "index": index, "content_block": _block_start(block)}
        out.append(encode_event("content_block_start", start))
        if index == 0:
            out.append(encode_event("ping", {"type": "ping"}))
        if block.kind in TOOL_KINDS:
            out.append(_delta_event(index, block, ""))
        out += _citation_events(index, block)
        for offset in range(0, len(block.pieces), step):
            rest.append(_delta_event(index, block, "".join(block.pieces[offset : offset + step])))
        if block.kind == "thinking":
            delta = {"type": "signature_delta", "signature": block.signature}
            rest.append(
                encode_event(
                    "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                )
            )
        rest.append(encode_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    found = plan.sse_content[step] = (b"".join(head), b"".join(rest))
    return found


async def _fault(ctx: ReplyContext) -> AsyncIterator[bytes]:
    if ctx.drop_connection:
        raise DroppedConnection
    error = error_of_type(ctx.midstream_error or "overloaded_error")
    body = {"type": "error", "error": {"type": error.error_type, "message": error.message}}
    yield encode_event("error", body)


def _citation_events(index: int, block: PlannedBlock) -> list[bytes]:
    """A cited text block's citations, each in a ``citations_delta`` ahead of its text."""
    deltas = ({"type": "citations_delta", "citation": citation} for citation in block.citations or ())
    return [
        encode_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        for delta in deltas
    ]


def _delta_event(index: int, block: PlannedBlock, text: str) -> bytes:
    return encode_event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": _delta(block, text)}
    )
