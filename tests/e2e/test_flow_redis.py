"""Three gateway processes in front of one Anthropic account share its limits through Redis: a burst spread
across them stays within the account's tier-1 limits as a whole (the upstream never answers 429), and the
account's allowance is shared, not split: together they answer about what one gateway would.

The gateways are real ``claudegate serve`` processes, configured through the environment as in production,
on one SQLite database whose key is made once with ``claudegate keys create``. Their buckets live under the
name of their upstream, unique to this run, so the test neither sees nor disturbs other users of the Redis
database; it deletes its keys when done.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import orjson
import pytest

from claudegate.simulator.settings import LatencyModel, SimulatorSettings
from tests.e2e.flow_support import call, client, ledger, simulator, usage_records

pytestmark = pytest.mark.redis

CLAUDEGATE = str(Path(sys.executable).with_name("claudegate"))
PROCESSES = 3
CALLS_PER_PROCESS = 30
DEADLINE_S = 3.0
TIER1_RPM = 50
FAST = LatencyModel(ttft_s=0.05, tokens_per_second=2000)
STARTUP_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def environment(database_url: str, redis_url: str, upstreams: list[dict[str, str]]) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CLAUDEGATE_") and name != "ANTHROPIC_API_KEY"
    }
    env.update(
        {
            "CLAUDEGATE_DATABASE_URL": database_url,
            "CLAUDEGATE_REDIS_URL": redis_url,
            "CLAUDEGATE_UPSTREAMS": orjson.dumps(upstreams).decode(),
            "CLAUDEGATE_LOG_LEVEL": "warning",
            "CLAUDEGATE_USAGE_FLUSH_INTERVAL_S": "0.05",
            "ANTHROPIC_API_KEY": "sk-not-used",  # the upstreams carry their own keys
        }
    )
    return env


@contextmanager
def gateway_processes(env: dict[str, str], tmp: Path, count: int) -> Iterator[list[str]]:
    """``count`` ``claudegate serve`` processes; yields their URLs once all answer /health."""
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for number in range(count):
            port = free_port()
            own = {**env, "CLAUDEGATE_USAGE_SPILL_FILE": str(tmp / f"spill-{number}.jsonl")}
            log = (tmp / f"gateway-{number}.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [CLAUDEGATE, "serve", "--host", "127.0.0.1", "--port", str(port)],
                    env=own,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        give_up = time.monotonic() + STARTUP_S
        for process, url in zip(processes, urls, strict=True):
            while True:
                assert process.poll() is None, f"a gateway exited at start: see {tmp}"
                try:
                    if httpx2.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                assert time.monotonic() < give_up, f"a gateway did not start in {STARTUP_S} s: see {tmp}"
                time.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def create_key(env: dict[str, str], org: str) -> dict[str, object]:
    done = subprocess.run(
        [CLAUDEGATE, "keys", "create", "--org", org, "--json"],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    created: dict[str, object] = orjson.loads(done.stdout)
    return created


async def delete_keys(redis_url: str, pattern: str) -> None:
    from redis.asyncio import Redis  # an optional dependency, like Redis itself

    redis = Redis.from_url(redis_url)
    try:
        found = [key async for key in redis.scan_iter(match=pattern)]
        if found:
            await redis.delete(*found)
    finally:
        await redis.aclose()


async def test_three_gateways_share_one_accounts_limits_through_redis(redis_url: str, tmp_path: Path) -> None:
    name = f"tier1-{uuid.uuid4().hex[:12]}"  # the lanes' bucket keys carry it: this run's own
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    with simulator(SimulatorSettings(tier="1", latency=FAST)) as upstream:
        upstreams = [{"name": name, "url": upstream.url, "api_key": "sk-upstream", "tier": "1"}]
        env = environment(database_url, redis_url, upstreams)
        key = create_key(env, "shared-account")
        try:
            with gateway_processes(env, tmp_path, PROCESSES) as urls:
                sdks = [client(url, str(key["key"])) for url in urls]
                began = time.monotonic()
                outcomes = await asyncio.gather(
                    *(
                        call(sdk, deadline_ms=int(DEADLINE_S * 1000))
                        for _ in range(CALLS_PER_PROCESS)
                        for sdk in sdks
                    )
                )
                seconds = time.monotonic() - began
                seen = ledger(upstream.url)
                for sdk in sdks:
                    await sdk.close()
        finally:
            await delete_keys(redis_url, f"*{name}*")

    # The account's limits held across the three processes: the upstream refused nothing, and saw no more
    # requests than its bucket holds plus what refilled while the burst lasted (all within one minute).
    assert [entry for entry in seen if entry["status"] == 429] == []
    assert len(seen) <= TIER1_RPM + TIER1_RPM / 60 * seconds + 1, (len(seen), seconds)

    # The allowance was shared, not split three ways (a third each would answer about 17 calls).
    answered = [outcome for outcome in outcomes if outcome.ok]
    assert len(answered) == len(seen)
    assert len(answered) >= 45, len(answered)
    for outcome in answered:
        assert outcome.seconds <= DEADLINE_S + 1.0, outcome
    # The others were refused by a gateway, with a 429 and a retry-after, by their deadline.
    for outcome in outcomes:
        if not outcome.ok:
            assert outcome.status == 429, outcome
            assert outcome.from_gateway, outcome
            assert outcome.retry_after is not None, outcome
            assert outcome.retry_after >= 1, outcome
            assert outcome.seconds <= DEADLINE_S + 1.0, outcome

    # One usage record per call, from whichever process served it, in the shared database.
    records = await usage_records(database_url, [int(str(key["id"]))], len(outcomes))
    assert len(records) == len(outcomes)
    assert sum(record["status"] == 200 for record in records) == len(answered)
    assert {record["upstream"] for record in records if record["status"] == 200} == {name}
