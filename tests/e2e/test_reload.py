"""Live reconfiguration of a running gateway (``claudegate serve --config``, a subprocess) under load from
the official SDK: its upstream is switched through the admin API, SIGHUP and a change of the file, an
invalid file is refused with its reason, and not one call fails throughout."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anthropic
import httpx2
import pytest

from tests.e2e.conftest import Tenant, make_tenant
from tests.e2e.flow_support import MODEL, ledger, simulator

ADMIN_TOKEN = "admin-secret-for-reload"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[str, str]]:
    with simulator() as first, simulator() as second:
        yield first.url, second.url


def _config(path: Path, database_url: str, upstream: str, *, poll_s: float, extra: str = "") -> None:
    path.write_text(
        f'upstream_url = "{upstream}"\n'
        'anthropic_api_key = "sk-test"\n'
        f'database_url = "{database_url}"\n'
        f'usage_spill_file = "{path.parent / "spill.jsonl"}"\n'
        f'admin_token = "{ADMIN_TOKEN}"\n'
        'upstream_tier = "unlimited"\n'
        f"config_poll_s = {poll_s}\n" + extra
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def _gateway(config: Path) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDEGATE_", "ANTHROPIC_"))}
    log = (config.parent / "gateway.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "claudegate", "serve", "--config", str(config), "--port", str(port)),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx2.AsyncClient() as http:
            while True:
                assert process.returncode is None, (config.parent / "gateway.log").read_text()
                try:
                    if (await http.get(f"{url}/health")).status_code == 200:
                        break
                except httpx2.TransportError:
                    await asyncio.sleep(0.1)
        yield url, process
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()
        log.close()


class Load:
    """SDK clients calling the gateway without pause until stopped; every failure is kept."""

    def __init__(self, url: str, tenant: Tenant, workers: int = 4) -> None:
        self._sdk = anthropic.AsyncAnthropic(base_url=url, api_key=tenant.key, max_retries=0)
        self._stop = asyncio.Event()
        self.calls = 0
        self.failures: list[str] = []
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(workers)]

    async def _worker(self) -> None:
        while not self._stop.is_set():
            try:
                await self._sdk.messages.create(
                    model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hello"}]
                )
            except anthropic.APIError as error:
                self.failures.append(repr(error))
            self.calls += 1

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def _until_served_by(upstream: str) -> None:
    """Until ``upstream`` receives calls that began after now (the reload reached new calls). The gateway is
    another process: its effect is observed by asking the simulator, as often as is cheap."""
    seen = len(ledger(upstream))
    while len(ledger(upstream)) < seen + 5:  # noqa: ASYNC110 - polls another process's state
        await asyncio.sleep(0.05)


async def _reload(url: str) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        return await http.post(f"{url}/admin/reload", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})


async def test_reload_through_the_admin_api_and_sighup_under_load(
    upstreams: tuple[str, str], flow_database_url: str, tmp_path: Path
) -> None:
    first, second = upstreams
    tenant = await make_tenant(flow_database_url, f"reload-{time.time_ns()}")
    config = tmp_path / "claudegate.toml"
    _config(config, flow_database_url, first, poll_s=3600)
    async with _gateway(config) as (url, process):
        load = Load(url, tenant)
        await _until_served_by(first)

        _config(config, flow_database_url, second, poll_s=3600, extra="default_deadline_s = 120\n")
        reply = await _reload(url)
        assert reply.status_code == 200
        assert reply.json() == {
            "reloaded": True,
            "changed": ["default_deadline_s", "upstream_url"],
            "restart_needed": [],
        }
        await _until_served_by(second)

        config.write_text(config.read_text() + "retry_max_attempts = 0\n")
        refused = await _reload(url)
        assert refused.status_code == 400
        message = refused.json()["error"]["message"]
        assert "configuration refused, the running one stays" in message
        assert "retry_max_attempts" in message
        await _until_served_by(second)

        _config(config, flow_database_url, first, poll_s=3600)
        process.send_signal(signal.SIGHUP)
        await _until_served_by(first)
        await load.stop()
    assert load.failures == []
    assert load.calls > 20


async def test_a_change_of_the_file_is_picked_up_under_load(
    upstreams: tuple[str, str], flow_database_url: str, tmp_path: Path
) -> None:
    first, second = upstreams
    tenant = await make_tenant(flow_database_url, f"reload-watch-{time.time_ns()}")
    config = tmp_path / "claudegate.toml"
    _config(config, flow_database_url, first, poll_s=0.1)
    async with _gateway(config) as (url, _):
        load = Load(url, tenant)
        await _until_served_by(first)
        config.write_text("this is = not [valid TOML\n")  # refused: calls go on to the first upstream
        await _until_served_by(first)
        _config(config, flow_database_url, second, poll_s=0.1)
        await _until_served_by(second)
        await load.stop()
    assert load.failures == []
    log = (tmp_path / "gateway.log").read_text()
    assert "is not valid TOML" in log
    assert "configuration reloaded" in log
