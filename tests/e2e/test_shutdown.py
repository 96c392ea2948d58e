"""A real ``claudegate serve`` process stopped with SIGTERM while two long streams are running (one through
the Anthropic API, one through the chat API): once the grace period (``shutdown_grace_s``) is over, each
ends with an error event (the SDK raises the Anthropic one), the process exits, and each call's usage record
keeps the tokens the upstream had produced.

The gateway runs with ``[[upstreams]]`` (through the environment, as in production), so the same process
also shows the start-up banner names them and does not claim the built-in simulator serves."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from claudegate.simulator.settings import LatencyModel, SimulatorSettings
from claudegate.store.migrate import upgrade_database
from tests.e2e.conftest import make_tenant, usage_rows
from tests.e2e.flow_support import REPLY_TOKENS_HEADER, simulator

CLAUDEGATE = str(Path(sys.executable).with_name("claudegate"))
SLOW = LatencyModel(ttft_s=0.05, tokens_per_second=100)  # 2,000 tokens take 20 s, far past the grace
STARTUP_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_gateway(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [CLAUDEGATE, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    give_up = time.monotonic() + STARTUP_S
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx2.TransportError:
            pass
        assert time.monotonic() < give_up, log.read_text()
        time.sleep(0.1)


async def chat_stream(url: str, key: str, chatting: asyncio.Event) -> list[dict[str, Any]]:
    """A streamed chat turn read to its end; ``chatting`` is set at its first token."""
    events: list[dict[str, Any]] = []
    async with (
        httpx2.AsyncClient(base_url=url, headers={"x-api-key": key}, timeout=60) as http,
        http.stream(
            "POST",
            "/chat/stream",
            json={"message": "Tell me another long story."},
            headers={REPLY_TOKENS_HEADER: "2000"},
        ) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                events.append(orjson.loads(line[5:]))
                if events[-1]["token"]:
                    chatting.set()
    return events


async def test_sigterm_ends_a_long_stream_with_an_error_event_and_keeps_its_tokens(tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    await upgrade_database(database_url)
    tenant = await make_tenant(database_url, f"shutdown-{uuid.uuid4().hex[:8]}")
    log = tmp_path / "gateway.log"
    with simulator(SimulatorSettings(latency=SLOW)) as upstream:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDEGATE_")}
        env.pop("ANTHROPIC_API_KEY", None)
        env.update(
            {
                "CLAUDEGATE_DATABASE_URL": database_url,
                "CLAUDEGATE_UPSTREAMS": orjson.dumps(
                    [{"name": "slow", "url": upstream.url, "api_key": "sk-upstream", "tier": "unlimited"}]
                ).decode(),
                "CLAUDEGATE_SHUTDOWN_GRACE_S": "1",
                "CLAUDEGATE_USAGE_SPILL_FILE": str(tmp_path / "spill.jsonl"),
                "CLAUDEGATE_LOG_LEVEL": "warning",
            }
        )
        port = free_port()
        process = start_gateway(env, port, log)
        url = f"http://127.0.0.1:{port}"
        chatting = asyncio.Event()
        try:
            chat = asyncio.create_task(chat_stream(url, tenant.key, chatting))
            sdk = anthropic.AsyncAnthropic(base_url=url, api_key=tenant.key, max_retries=0)
            deltas = 0
            with pytest.raises(anthropic.APIStatusError) as ended:  # noqa: PT012 - raised while iterating
                stream = await sdk.messages.create(
                    model="claude-sonnet-4-6",
                    max_tokens=4000,
                    messages=[{"role": "user", "content": "Tell me a long story."}],
                    stream=True,
                    extra_headers={REPLY_TOKENS_HEADER: "2000"},
                )
                async for event in stream:
                    if event.type == "content_block_delta":
                        deltas += 1
                        if deltas == 5:
                            await chatting.wait()  # both streams are under way
                            process.send_signal(signal.SIGTERM)
            chat_events = await chat
            # uvicorn exits by re-raising the signal it handled, as a process stopped by SIGTERM does.
            assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    # The stream went on through the grace period, then ended with Anthropic's error event.
    assert deltas > 5
    body = ended.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "overloaded_error"
    assert "shutting down" in body["error"]["message"]
    # The chat stream too ended with its error event, after the tokens it had sent.
    assert any(event["token"] for event in chat_events)
    assert chat_events[-1]["done"] is True
    assert chat_events[-1]["error"]["type"] == "overloaded_error"
    assert "shutting down" in chat_events[-1]["error"]["message"]
    records = await usage_rows(database_url, [tenant.key_id])
    assert len(records) == 2
    for record in records:
        assert record["status"] == 200
        assert record["error_type"] == "gateway_shutdown"
        assert record["streamed"] is True
        assert record["output_tokens"] > 0
    # The banner names the configured upstreams; the built-in simulator does not serve.
    banner = log.read_text()
    assert "SIMULATOR MODE" not in banner
    assert "upstream: slow http" in banner
    assert "built-in simulator" not in banner
