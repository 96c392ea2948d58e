"""The gateway's acceptance tests run real servers on loopback: a simulator as the upstream and a gateway in
front of it (uvicorn, uvloop, httptools, as in production), on a SQLite file and on a fresh PostgreSQL
database. Clients are the real ones: the official SDKs and plain HTTP.

Everything here is started once per database and shared by the tests (servers cost seconds, tests must not);
tests that need a clean slate (accounting) make an organisation and keys of their own.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from claudegate.config import Settings
from claudegate.server.gateway import Gateway
from claudegate.simulator.server import SimulatorServer
from claudegate.simulator.settings import LatencyModel, SimulatorSettings
from claudegate.store._engine import create_engine
from claudegate.store.api_keys import KeyRepository
from claudegate.store.migrate import upgrade_database
from claudegate.store.orgs import OrgRepository
from claudegate.store.tables import UsageRow
from tests.databases import fresh_postgres_database
from tests.servers import running_in_thread

# How fast the slow simulator streams: slow enough that a client can hang up half way through a reply,
# fast enough that a whole reply of SLOW_REPLY_TOKENS takes a second.
SLOW_LATENCY = LatencyModel(ttft_s=0.05, tokens_per_second=200)
SLOW_REPLY_TOKENS = 200


class GatewayServer:
    """A :class:`Gateway` under uvicorn on a free loopback port; ``running_in_thread`` starts and stops it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.gateway = Gateway(settings)
        config = uvicorn.Config(
            self.gateway,
            host="127.0.0.1",
            port=self.port,
            lifespan="on",
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server.config.setup_event_loop = lambda: None  # type: ignore[method-assign]
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the gateway did not start (lifespan startup failed; see the log)")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task


@dataclass(frozen=True, slots=True)
class Tenant:
    """An organisation with a key of its own and a key belonging to one of its users."""

    org_id: int
    org_name: str
    key: str
    key_id: int
    user_id: int
    user_key: str
    user_key_id: int


@dataclass(frozen=True, slots=True)
class Stack:
    """A gateway in front of the fast simulator, and who may call it."""

    url: str
    simulator_url: str
    database_url: str
    org_a: Tenant
    org_b: Tenant
    revoked_key: str
    server: GatewayServer


async def make_tenant(database_url: str, name: str) -> Tenant:
    engine = create_engine(database_url)
    try:
        orgs, keys = OrgRepository(engine), KeyRepository(engine)
        org = await orgs.create_org(name)
        user = await orgs.create_user(org.id, "alice")
        key = await keys.create_key(org_id=org.id, name="service")
        user_key = await keys.create_key(org_id=org.id, user_id=user.id, name="alice-laptop")
    finally:
        await engine.dispose()
    return Tenant(
        org_id=org.id,
        org_name=name,
        key=key.key,
        key_id=key.row.id,
        user_id=user.id,
        user_key=user_key.key,
        user_key_id=user_key.row.id,
    )


async def usage_rows(database_url: str, key_ids: list[int]) -> list[dict[str, Any]]:
    """The usage records of these keys, as stored (one dict of columns per record)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(select(UsageRow.__table__).where(UsageRow.key_id.in_(key_ids)))
            return [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()


def gateway_settings(upstream_url: str, database_url: str, tmp: Path) -> Settings:
    """A gateway that passes every upstream error straight back (one attempt per call, no breaker trips),
    so these tests can compare it with the upstream answer for answer; retries and failover have tests of
    their own (tests/e2e/test_flow_*.py)."""
    return Settings(
        upstream_url=upstream_url,
        anthropic_api_key="sk-test",
        database_url=database_url,
        usage_flush_interval_s=0.05,
        usage_spill_file=tmp / "usage-spill.jsonl",
        upstream_tier="unlimited",
        retry_max_attempts=1,
        breaker_failure_threshold=1_000_000,
    )


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """An upgraded, empty database: a SQLite file, or a PostgreSQL database made for this session and
    dropped after it, so reruns start clean."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('e2e-sqlite') / 'claudegate.db'}"
        await upgrade_database(url)
        yield url
        return
    server_url: str = request.getfixturevalue("postgres_url")
    async with fresh_postgres_database(server_url) as url:
        await upgrade_database(url)
        yield url


@pytest.fixture(scope="session")
async def stack(
    database_url: str, simulator_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    org_a = await make_tenant(database_url, "acme")
    org_b = await make_tenant(database_url, "globex")
    revoked = await make_tenant(database_url, "initech")
    engine = create_engine(database_url)
    try:
        await KeyRepository(engine).revoke_key(revoked.key_id)
    finally:
        await engine.dispose()
    settings = gateway_settings(simulator_url, database_url, tmp_path_factory.mktemp("gateway"))
    with running_in_thread(lambda: GatewayServer(settings)) as server:
        assert isinstance(server, GatewayServer)
        yield Stack(
            url=server.url,
            simulator_url=simulator_url,
            database_url=database_url,
            org_a=org_a,
            org_b=org_b,
            revoked_key=revoked.key,
            server=server,
        )


@pytest.fixture(scope="session")
def slow_simulator_url() -> Iterator[str]:
    """A simulator that streams at a human pace, so clients can hang up half way through a reply."""
    with running_in_thread(lambda: SimulatorServer(SimulatorSettings(latency=SLOW_LATENCY))) as server:
        assert isinstance(server, SimulatorServer)
        yield server.url


@pytest.fixture(scope="session")
def slow_gateway_url(
    stack: Stack, slow_simulator_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A second gateway, on the same database, in front of the slow simulator."""
    settings = gateway_settings(slow_simulator_url, stack.database_url, tmp_path_factory.mktemp("slow"))
    with running_in_thread(lambda: GatewayServer(settings)) as server:
        assert isinstance(server, GatewayServer)
        yield server.url


def strip_ids(value: Any) -> Any:
    """A reply with the message ids (random per call) removed, for comparing two replies to one request."""
    if isinstance(value, dict):
        return {
            k: strip_ids(v) for k, v in value.items() if not (k == "id" and value.get("type") == "message")
        }
    if isinstance(value, list):
        return [strip_ids(v) for v in value]
    return value


@pytest.fixture(scope="session")
async def flow_database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The flow-control tests' database: one upgraded SQLite file for the session. What they test does not
    depend on the database, so they do not run twice (test_accounting.py covers both databases)."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('flow') / 'claudegate.db'}"
    await upgrade_database(url)
    return url
