"""What the flow-control acceptance tests share: gateways and simulators of their own on loopback, calls
through the official SDK that report how they ended and how long they took, and the simulator's ledger.

Each test starts the servers whose settings it needs (a tier-1 simulator, two upstreams, a short breaker),
so no test inherits another's buckets, pauses or breaker state; the session's database is shared, and
tests that read usage records make an organisation of their own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx2
from anthropic.types import MessageParam

from claudegate.config import Settings
from claudegate.simulator.server import SimulatorServer
from claudegate.simulator.settings import SimulatorSettings
from tests.e2e.conftest import GatewayServer, usage_rows
from tests.servers import running_in_thread

MODEL = "claude-sonnet-4-6"
DEADLINE_HEADER = "x-claudegate-deadline-ms"
REPLY_TOKENS_HEADER = "x-simulator-reply-tokens"
FAULT_HEADER = "x-simulator-fault"
ORIGIN_HEADER = "x-claudegate-origin"


@dataclass(slots=True)
class Outcome:
    """How one call ended, as its client saw it."""

    status: int
    seconds: float  # from sending the request to the end of the reply (or of the error)
    headers: dict[str, str] = field(default_factory=dict)
    error_type: str | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def from_gateway(self) -> bool:
        return self.headers.get(ORIGIN_HEADER) == "gateway"

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        return float(value) if value is not None else None


def client(url: str, key: str) -> anthropic.AsyncAnthropic:
    """The SDK as an application would use it, except that its own retries are off: they would hide what
    the gateway does."""
    return anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0)


def messages(text: str | None = None) -> list[MessageParam]:
    """A short prompt; pass ``text`` to make the body unique (the simulator's ``times=N`` faults count
    requests by body)."""
    return [{"role": "user", "content": text or f"Hello {uuid.uuid4().hex}"}]


async def call(
    sdk: anthropic.AsyncAnthropic,
    *,
    deadline_ms: int | None = None,
    reply_tokens: int | None = 5,
    fault: str | None = None,
    text: str | None = None,
    max_tokens: int = 16,
    model: str = MODEL,
) -> Outcome:
    """One non-streamed call; never raises for an API error, returns it as an Outcome."""
    headers: dict[str, str] = {}
    if deadline_ms is not None:
        headers[DEADLINE_HEADER] = str(deadline_ms)
    if reply_tokens is not None:
        headers[REPLY_TOKENS_HEADER] = str(reply_tokens)
    if fault is not None:
        headers[FAULT_HEADER] = fault
    began = time.perf_counter()
    try:
        raw = await sdk.messages.with_raw_response.create(
            model=model, max_tokens=max_tokens, messages=messages(text), extra_headers=headers
        )
        await raw.parse()
    except anthropic.APIStatusError as error:
        body = error.body if isinstance(error.body, dict) else {}
        detail = body.get("error") if isinstance(body.get("error"), dict) else {}
        return Outcome(
            status=error.status_code,
            seconds=time.perf_counter() - began,
            headers=dict(error.response.headers),
            error_type=detail.get("type"),
            message=str(detail.get("message", "")),
        )
    return Outcome(status=raw.status_code, seconds=time.perf_counter() - began, headers=dict(raw.headers))


def gateway_settings(upstream_url: str | None, database_url: str, tmp: Path, **overrides: Any) -> Settings:
    """A gateway in front of ``upstream_url`` (or of ``overrides["upstreams"]``) with flow control as in
    production: retries, breakers and the tier's limits, unless a test overrides them."""
    values: dict[str, Any] = {
        "anthropic_api_key": "sk-test",
        "database_url": database_url,
        "usage_flush_interval_s": 0.05,
        "usage_spill_file": tmp / f"usage-spill-{uuid.uuid4().hex}.jsonl",
    }
    if upstream_url is not None:
        values["upstream_url"] = upstream_url
    values.update(overrides)
    return Settings(**values)


@contextmanager
def simulator(settings: SimulatorSettings | None = None, port: int = 0) -> Iterator[SimulatorServer]:
    with running_in_thread(lambda: SimulatorServer(settings or SimulatorSettings(), port=port)) as server:
        assert isinstance(server, SimulatorServer)
        yield server


@contextmanager
def gateway(settings: Settings) -> Iterator[GatewayServer]:
    with running_in_thread(lambda: GatewayServer(settings)) as server:
        assert isinstance(server, GatewayServer)
        yield server


def ledger(simulator_url: str) -> list[dict[str, Any]]:
    """Every request the simulator saw, in order, with its status and the tokens it charged."""
    response = httpx2.get(f"{simulator_url}/_simulator/ledger")
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()
    return entries


async def usage_records(
    database_url: str, key_ids: list[int], count: int, timeout_s: float = 5.0
) -> list[dict[str, Any]]:
    """The usage records of these keys once there are ``count`` of them (records are written in batches a
    few times a second), or whatever there is after ``timeout_s``."""
    give_up = time.monotonic() + timeout_s
    while True:
        rows = await usage_rows(database_url, key_ids)
        if len(rows) >= count or time.monotonic() > give_up:
            return sorted(rows, key=lambda row: row["id"])
        await asyncio.sleep(0.05)
