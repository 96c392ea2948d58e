"""``claudegate serve --workers 2`` on one port with Redis: calls from the Anthropic SDK are answered by both
worker processes (each reply names its worker), SIGTERM to the parent shuts both down gracefully (exit 0;
streams in flight on either worker run through the grace period and end with an error event) and every
call has its usage record. A worker that dies right after starting stops the gateway (exit 1). Without
Redis, more than one worker is refused at once (exit 2)."""

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

import anthropic
import httpx2
import orjson
import pytest

from claudegate.simulator.settings import LatencyModel, SimulatorSettings
from claudegate.store.migrate import upgrade_database
from tests.e2e.conftest import make_tenant, usage_rows
from tests.e2e.flow_support import REPLY_TOKENS_HEADER, simulator

pytestmark = pytest.mark.redis

CLAUDEGATE = str(Path(sys.executable).with_name("claudegate"))
STARTUP_S = 30.0
CLIENTS = 24  # each its own connection: the kernel spreads connections over the workers
STREAMS = 16  # long streams in flight at shutdown, each on its own connection


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def environment(database_url: str, tmp: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDEGATE_")}
    env.pop("ANTHROPIC_API_KEY", None)
    env.update(
        {
            "CLAUDEGATE_DATABASE_URL": database_url,
            "CLAUDEGATE_USAGE_SPILL_FILE": str(tmp / "spill.jsonl"),
            "CLAUDEGATE_LOG_LEVEL": "warning",
            **settings,
        }
    )
    return env


def start_workers(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """``claudegate serve --workers 2``, once it answers /health."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [CLAUDEGATE, "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    give_up = time.monotonic() + STARTUP_S
    try:
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return process
            except httpx2.TransportError:
                pass
            assert time.monotonic() < give_up, log.read_text()
            time.sleep(0.1)
    except BaseException:
        # A gateway that never answered is stopped here: the test's own cleanup never gets it.
        process.kill()
        process.wait()
        raise


async def one_call(url: str, key: str, number: int) -> str:
    """One call on a connection of its own; the worker that answered."""
    async with anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0) as sdk:
        raw = await sdk.messages.with_raw_response.create(
            model="claude-sonnet-4-6",
            max_tokens=50,
            messages=[{"role": "user", "content": f"Call number {number}."}],
        )
        message = await raw.parse()
        assert message.content
        return raw.headers["x-claudegate-worker"]


async def test_two_workers_share_the_port_and_shut_down_cleanly(redis_url: str, tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    await upgrade_database(database_url)
    tenant = await make_tenant(database_url, f"workers-{uuid.uuid4().hex[:8]}")
    log = tmp_path / "gateway.log"
    with simulator(SimulatorSettings()) as upstream:
        env = environment(
            database_url,
            tmp_path,
            CLAUDEGATE_REDIS_URL=redis_url,
            CLAUDEGATE_REDIS_PREFIX=f"test-workers-{uuid.uuid4().hex[:8]}:",
            CLAUDEGATE_UPSTREAMS=orjson.dumps(
                [{"name": "sim", "url": upstream.url, "api_key": "sk-upstream", "tier": "unlimited"}]
            ).decode(),
        )
        port = free_port()
        process = start_workers(env, port, log)
        try:
            url = f"http://127.0.0.1:{port}"
            workers = await asyncio.gather(*(one_call(url, tenant.key, n) for n in range(CLIENTS)))
            process.send_signal(signal.SIGTERM)
            status = await asyncio.to_thread(process.wait, 60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert set(workers) == {"1", "2"}  # both workers answered
    assert status == 0, log.read_text()
    banner = log.read_text()
    assert "(2 workers)" in banner
    assert "exited" not in banner  # no worker died on its way
    records = await usage_rows(database_url, [tenant.key_id])
    assert len(records) == CLIENTS
    assert all(record["status"] == 200 for record in records)


def test_more_than_one_worker_without_redis_is_refused_at_once(tmp_path: Path) -> None:
    env = environment(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}", tmp_path)
    result = subprocess.run(
        [CLAUDEGATE, "serve", "--port", str(free_port()), "--workers", "2"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    message = result.stderr.decode()
    assert "2 workers need redis_url" in message
    assert "claudegate gateway on" not in message  # refused before anything started


def worker_pids(parent: int) -> list[int]:
    """The gateway workers of ``parent`` (its children that are not multiprocessing's resource tracker)."""
    children: list[int] = []
    for task in os.listdir(f"/proc/{parent}/task"):
        children += [int(pid) for pid in Path(f"/proc/{parent}/task/{task}/children").read_text().split()]
    return [pid for pid in children if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]


def age_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    started_ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - started_ticks / os.sysconf("SC_CLK_TCK")


def test_a_worker_that_dies_right_after_starting_stops_the_gateway(redis_url: str, tmp_path: Path) -> None:
    """A worker that dies within seconds of its start would die again if restarted: rather than restart it
    in a loop, the parent shuts the other workers down and exits 1, saying why."""
    env = environment(
        f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        tmp_path,
        CLAUDEGATE_REDIS_URL=redis_url,
        CLAUDEGATE_REDIS_PREFIX=f"test-workers-{uuid.uuid4().hex[:8]}:",
    )
    log = tmp_path / "gateway.log"
    process = start_workers(env, free_port(), log)
    try:
        workers = worker_pids(process.pid)
        assert len(workers) == 2
        if age_s(workers[0]) > 8:  # a worker up for 10 s counts as having run: it would be restarted
            pytest.skip("the machine took too long to start the workers for this test")
        os.kill(workers[0], signal.SIGKILL)
        assert process.wait(timeout=60) == 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert "exited: -9" in output
    assert "stopping" in output
    for pid in workers[1:]:  # the other worker was shut down too, not left behind
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


async def long_stream(url: str, key: str, streaming: asyncio.Event, number: int) -> tuple[str, list[str]]:
    """A long streamed call on a connection of its own: the worker that answered, and its SSE event names."""
    events: list[str] = []
    async with (
        httpx2.AsyncClient(base_url=url, headers={"x-api-key": key}, timeout=60) as http,
        http.stream(
            "POST",
            "/v1/messages",
            json={
                "model": "claude-sonnet-4-6",
                "max_tokens": 4000,
                "stream": True,
                "messages": [{"role": "user", "content": f"Tell long story number {number}."}],
            },
            headers={"anthropic-version": "2023-06-01", REPLY_TOKENS_HEADER: "2000"},
        ) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                events.append(line[6:].strip())
                if events[-1] == "content_block_delta":
                    streaming.set()
        return response.headers["x-claudegate-worker"], events


async def test_sigterm_gives_every_worker_its_graceful_shutdown(redis_url: str, tmp_path: Path) -> None:
    """Streams in flight on both workers when the parent gets SIGTERM: each runs through the grace period,
    then ends with Anthropic's error event, and each keeps a usage record with what was produced."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    await upgrade_database(database_url)
    tenant = await make_tenant(database_url, f"workers-{uuid.uuid4().hex[:8]}")
    log = tmp_path / "gateway.log"
    with simulator(SimulatorSettings(latency=LatencyModel(ttft_s=0.05, tokens_per_second=100))) as upstream:
        env = environment(
            database_url,
            tmp_path,
            CLAUDEGATE_REDIS_URL=redis_url,
            CLAUDEGATE_REDIS_PREFIX=f"test-workers-{uuid.uuid4().hex[:8]}:",
            CLAUDEGATE_SHUTDOWN_GRACE_S="1",
            CLAUDEGATE_UPSTREAMS=orjson.dumps(
                [{"name": "slow", "url": upstream.url, "api_key": "sk-upstream", "tier": "unlimited"}]
            ).decode(),
        )
        port = free_port()
        process = start_workers(env, port, log)
        try:
            url = f"http://127.0.0.1:{port}"
            started = [asyncio.Event() for _ in range(STREAMS)]
            streams = [
                asyncio.create_task(long_stream(url, tenant.key, started[n], n)) for n in range(STREAMS)
            ]
            for event in started:
                await event.wait()
            process.send_signal(signal.SIGTERM)
            ended = await asyncio.gather(*streams)
            status = await asyncio.to_thread(process.wait, 60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert status == 0, log.read_text()
    assert {worker for worker, _ in ended} == {"1", "2"}  # streams were in flight on both workers
    for _, events in ended:
        assert "content_block_delta" in events
        assert events[-1] == "error"  # ended by the gateway's shutdown, with Anthropic's error event
    records = await usage_rows(database_url, [tenant.key_id])
    assert len(records) == STREAMS
    for record in records:
        assert record["error_type"] == "gateway_shutdown"
        assert record["output_tokens"] > 0
