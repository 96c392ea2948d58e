"""An upstream newer than the gateway reports usage the gateway has no field for, and server-tool requests:
the call goes through untouched, the record keeps every field, and server-tool fees are costed.

The upstream here is a small real HTTP server that answers with recorded replies carrying such usage (the
simulator reports only fields that exist today, so it cannot stand in for tomorrow's API)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.e2e.conftest import GatewayServer, gateway_settings, make_tenant, usage_rows
from tests.servers import running_in_thread

MODEL = "claude-sonnet-4-6"
USAGE: dict[str, Any] = {
    "input_tokens": 1000,
    "output_tokens": 100,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "service_tier": "standard",
    "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 2},
    "output_tokens_details": {"thinking_tokens": 40},
    "carbon_grams": 0.25,  # a field no SDK or gateway knows yet
}


def _message() -> dict[str, Any]:
    return {
        "id": "msg_01future",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Found it."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": USAGE,
    }


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _stream() -> bytes:
    start = _message() | {
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 1000, "output_tokens": 1},
    }
    text = {"type": "text", "text": ""}
    delta = {"type": "text_delta", "text": "Found it."}
    stop = {"stop_reason": "end_turn", "stop_sequence": None}
    return b"".join(
        [
            _sse("message_start", {"type": "message_start", "message": start}),
            _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": text}),
            _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _sse("message_delta", {"type": "message_delta", "delta": stop, "usage": USAGE}),
            _sse("message_stop", {"type": "message_stop"}),
        ]
    )


async def _messages(request: Request) -> Response:
    body = orjson.loads(await request.body())
    headers = {"request-id": "req_future"}
    if body.get("stream"):
        return Response(_stream(), media_type="text/event-stream; charset=utf-8", headers=headers)
    return Response(orjson.dumps(_message()), media_type="application/json", headers=headers)


class FutureUpstream:
    """The recorded replies above under uvicorn on a free loopback port."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        app = Starlette(routes=[Route("/v1/messages", _messages, methods=["POST"])])
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the upstream did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task


@pytest.fixture(scope="module")
def future_upstream() -> Iterator[str]:
    with running_in_thread(FutureUpstream) as server:
        assert isinstance(server, FutureUpstream)
        yield server.url


async def test_unknown_usage_fields_are_kept_and_server_tools_are_costed(
    future_upstream: str, database_url: str, tmp_path: Path
) -> None:
    tenant = await make_tenant(database_url, "searchco")
    settings = gateway_settings(future_upstream, database_url, tmp_path)
    with running_in_thread(lambda: GatewayServer(settings)) as gateway:
        assert isinstance(gateway, GatewayServer)
        async with anthropic.AsyncAnthropic(
            base_url=gateway.url, api_key=tenant.key, max_retries=0, _strict_response_validation=True
        ) as client:
            message = await client.messages.create(
                model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "Search for it"}]
            )
            async with client.messages.stream(
                model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "Search for it"}]
            ) as stream:
                streamed = await stream.get_final_message()
        deadline = time.monotonic() + 15
        rows = await usage_rows(database_url, [tenant.key_id])
        while len(rows) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            rows = await usage_rows(database_url, [tenant.key_id])
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_search_requests == 3
    assert streamed.usage.output_tokens == 100
    assert len(rows) == 2
    for row in rows:
        assert row["status"] == 200
        assert row["usage_details"]["carbon_grams"] == 0.25
        assert row["usage_details"]["output_tokens_details"] == {"thinking_tokens": 40}
        assert row["usage_details"]["server_tool_use"] == {"web_search_requests": 3, "web_fetch_requests": 2}
        # Sonnet 4.6: 1000 * 3 + 100 * 15 per million = 0.0045, plus three searches at $0.01 (fetches free).
        assert row["cost_usd"] == Decimal("0.0345")
