"""The in-process client (``claudegate.AsyncClient`` and ``claudegate.Client``) is a drop-in for the official
SDK: the same requests give the same replies, streams and errors as ``anthropic.AsyncAnthropic`` sent straight
to the simulator, while every call runs claudegate's pipeline in this process (flow control, usage records).
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam
from sqlalchemy import select

import claudegate
from claudegate import AsyncClient
from claudegate.config import Settings
from claudegate.simulator.server import SimulatorServer
from claudegate.simulator.settings import LatencyModel, SimulatorSettings
from claudegate.store import Store
from claudegate.store.tables import UsageRow
from tests.e2e.conftest import strip_ids
from tests.servers import running_in_thread

MODEL = "claude-sonnet-4-6"
HELLO: list[MessageParam] = [{"role": "user", "content": "Hello, who are you?"}]
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "City and country"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
}
TOOL_CALL: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 400,
    "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
    "tools": [WEATHER_TOOL],
    "tool_choice": {"type": "any"},
}


def client_settings(upstream_url: str, tmp: Path, **overrides: Any) -> Settings:
    """One attempt per call and a breaker that never opens, so that errors come back as the upstream gave
    them (retries and failover have tests of their own)."""
    values: dict[str, Any] = {
        "upstream_url": upstream_url,
        "anthropic_api_key": "sk-test",
        "database_url": f"sqlite+aiosqlite:///{tmp / 'claudegate.db'}",
        "usage_flush_interval_s": 0.05,
        "usage_spill_file": tmp / "usage-spill.jsonl",
        "upstream_tier": "unlimited",
        "retry_max_attempts": 1,
        "breaker_failure_threshold": 1_000_000,
    }
    return Settings(**{**values, **overrides})


def reply(message: Any) -> dict[str, Any]:
    data: dict[str, Any] = strip_ids(message.model_dump(mode="json"))
    return data


async def usage_rows(database_url: str, org: str, count: int = 0) -> list[dict[str, Any]]:
    """The organisation's usage records, waiting (up to 5 s) until there are ``count`` of them: the writer
    flushes every 50 ms."""
    store = await Store.open(database_url)
    try:
        for _ in range(100):
            found = await store.orgs.get_org(org)
            assert found is not None
            async with store.engine.connect() as conn:
                result = await conn.execute(select(UsageRow.__table__).where(UsageRow.org_id == found.id))
                rows = [dict(row._mapping) for row in result]
            if len(rows) >= count:
                return rows
            await asyncio.sleep(0.05)
    finally:
        await store.close()
    raise AssertionError(f"expected {count} usage records for {org}, found {len(rows)}")


@pytest.fixture(scope="module")
async def client(simulator_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AsyncClient]:
    settings = client_settings(simulator_url, tmp_path_factory.mktemp("inprocess"))
    async with AsyncClient(settings=settings, org="acme", user="alice") as client:
        yield client


@pytest.fixture
def direct(simulator_url: str) -> anthropic.AsyncAnthropic:
    """The official SDK, straight to the simulator (which takes any key)."""
    return anthropic.AsyncAnthropic(base_url=simulator_url, api_key=f"sk-{uuid.uuid4().hex}", max_retries=0)


@pytest.fixture(scope="module")
def slow_simulator_url() -> Iterator[str]:
    """A simulator that streams at 200 tokens per second, so a caller can leave half way through."""
    latency = LatencyModel(ttft_s=0.05, tokens_per_second=200)
    with running_in_thread(lambda: SimulatorServer(SimulatorSettings(latency=latency))) as server:
        assert isinstance(server, SimulatorServer)
        yield server.url


@pytest.fixture(scope="module")
def tier1_simulator_url() -> Iterator[str]:
    with running_in_thread(lambda: SimulatorServer(SimulatorSettings(tier="1"))) as server:
        assert isinstance(server, SimulatorServer)
        yield server.url


# -- The same replies as the SDK ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"max_tokens": 200, "messages": HELLO}, id="plain"),
        pytest.param(
            {"max_tokens": 200, "messages": HELLO, "system": "Be brief.", "metadata": {"user_id": "u-42"}},
            id="system",
        ),
        pytest.param({"max_tokens": 5, "messages": HELLO}, id="max_tokens"),
        pytest.param({"max_tokens": 400, "messages": HELLO, "stop_sequences": ["the"]}, id="stop_sequence"),
        pytest.param(
            {"max_tokens": 2000, "messages": HELLO, "thinking": {"type": "enabled", "budget_tokens": 1024}},
            id="thinking",
        ),
        pytest.param({k: v for k, v in TOOL_CALL.items() if k != "model"}, id="tool_use"),
    ],
)
async def test_create_gives_the_sdks_reply(
    client: AsyncClient, direct: anthropic.AsyncAnthropic, params: dict[str, Any]
) -> None:
    ours = await client.messages.create(model=MODEL, **params)
    theirs = await direct.messages.create(model=MODEL, **params)
    assert isinstance(ours, anthropic.types.Message)
    assert reply(ours) == reply(theirs)
    assert ours.usage.input_tokens > 0
    assert ours._request_id is not None
    assert ours._request_id.startswith("req_")


async def test_streams_give_the_sdks_events_text_and_final_message(
    client: AsyncClient, direct: anthropic.AsyncAnthropic
) -> None:
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 300, "messages": HELLO}
    whole = await client.messages.create(**params)

    ours = [
        strip_ids(event.model_dump(mode="json"))
        async for event in await client.messages.create(**params, stream=True)
    ]
    theirs = [
        strip_ids(event.model_dump(mode="json"))
        async for event in await direct.messages.create(**params, stream=True)
    ]
    assert ours == theirs
    assert ours[0]["type"] == "message_start"
    assert ours[-1]["type"] == "message_stop"

    async with client.messages.stream(**params) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
        assert await stream.get_final_text() == text
        assert stream.current_message_snapshot is final
        assert stream.request_id is not None
    async with direct.messages.stream(**params) as sdk_stream:
        sdk_final = await sdk_stream.get_final_message()
    assert text == whole.content[0].text  # type: ignore[union-attr]
    assert reply(final) == reply(whole)
    assert reply(final) == reply(sdk_final)


async def test_a_tool_use_stream_gives_the_sdks_events_and_message(
    client: AsyncClient, direct: anthropic.AsyncAnthropic
) -> None:
    async def events_and_final(stream: Any) -> tuple[list[dict[str, Any]], Any]:
        async with stream as opened:
            events = [strip_ids(event.model_dump(mode="json")) async for event in opened]
            return events, await opened.get_final_message()

    ours, final = await events_and_final(client.messages.stream(**TOOL_CALL))
    theirs, sdk_final = await events_and_final(direct.messages.stream(**TOOL_CALL))
    kinds = [event["type"] for event in ours]
    assert kinds == [event["type"] for event in theirs]
    assert "input_json" in kinds
    assert ours[-1] == theirs[-1]  # message_stop, with the whole message
    assert reply(final) == reply(sdk_final) == reply(await direct.messages.create(**TOOL_CALL))
    assert final.stop_reason == "tool_use"
    call = next(block for block in final.content if block.type == "tool_use")
    assert "location" in call.input


async def test_count_tokens_gives_the_sdks_count(
    client: AsyncClient, direct: anthropic.AsyncAnthropic
) -> None:
    params: dict[str, Any] = {
        "model": MODEL,
        "messages": HELLO,
        "system": "Be brief.",
        "tools": [WEATHER_TOOL],
    }
    ours = await client.messages.count_tokens(**params)
    assert isinstance(ours, anthropic.types.MessageTokensCount)
    assert ours.input_tokens == (await direct.messages.count_tokens(**params)).input_tokens > 0


async def test_unknown_parameters_and_sdk_models_reach_the_body_as_the_sdk_sends_them(
    client: AsyncClient, direct: anthropic.AsyncAnthropic
) -> None:
    first = await client.messages.create(**TOOL_CALL)
    call = next(block for block in first.content if block.type == "tool_use")
    follow_up: list[Any] = [
        *TOOL_CALL["messages"],
        {"role": "assistant", "content": first.content},  # the SDK's own models, sent back
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 °C"}]},
    ]
    params = {**TOOL_CALL, "messages": follow_up, "tool_choice": {"type": "auto"}}
    ours = await client.messages.create(**params, temperature=0.5)  # not in SDK 2.12's signature
    theirs = await direct.messages.create(**params, extra_body={"temperature": 0.5})
    assert reply(ours) == reply(theirs)


# -- The same errors as the SDK -----------------------------------------------------------------------------


def fault(kind: str) -> dict[str, Any]:
    return {"extra_headers": {"x-simulator-fault": kind}}


@pytest.mark.parametrize(
    ("ours", "theirs", "exception"),
    [
        pytest.param({"extra_body": {"top_k": -1}}, None, anthropic.BadRequestError, id="400-validation"),
        pytest.param({"messages": []}, None, anthropic.BadRequestError, id="400-no-messages"),
        pytest.param(
            {"temperature": 5}, {"extra_body": {"temperature": 5}}, anthropic.BadRequestError, id="400-extra"
        ),
        pytest.param(
            {"betas": ["no such beta"]},
            {"extra_headers": {"anthropic-beta": "no such beta"}},
            anthropic.BadRequestError,
            id="400-beta",
        ),
        pytest.param({"model": "claude-nonexistent-9"}, None, anthropic.NotFoundError, id="404-model"),
        pytest.param(fault("billing"), None, anthropic.PaymentRequiredError, id="402"),
        pytest.param(fault("permission"), None, anthropic.PermissionDeniedError, id="403"),
        # The upstream's retry-after pauses the lane that long: keep it short, the calls after this one wait.
        pytest.param(fault("rate_limit:1"), None, anthropic.RateLimitError, id="429"),
        pytest.param(fault("server_error"), None, anthropic.InternalServerError, id="500"),
        pytest.param(fault("timeout"), None, anthropic.GatewayTimeoutError, id="504"),
        pytest.param(fault("overloaded"), None, anthropic.OverloadedError, id="529"),
    ],
)
async def test_errors_raise_the_sdks_exceptions(
    client: AsyncClient,
    direct: anthropic.AsyncAnthropic,
    ours: dict[str, Any],
    theirs: dict[str, Any] | None,
    exception: type[anthropic.APIStatusError],
) -> None:
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 50, "messages": HELLO}
    with pytest.raises(anthropic.APIStatusError) as caught:
        await client.messages.create(**{**params, **ours})
    with pytest.raises(anthropic.APIStatusError) as expected:
        await direct.messages.create(**{**params, **(theirs if theirs is not None else ours)})
    error, sdk_error = caught.value, expected.value
    assert type(error) is type(sdk_error) is exception
    assert error.status_code == sdk_error.status_code
    assert error.body["error"] == sdk_error.body["error"]  # type: ignore[index]
    assert error.request_id is not None
    assert error.request_id.startswith("req_011C")  # the upstream's error, relayed
    assert "x-claudegate-origin" not in error.response.headers
    assert str(error).startswith(f"Error code: {error.status_code} - ")
    if exception is anthropic.RateLimitError:
        assert error.response.headers["retry-after"] == sdk_error.response.headers["retry-after"] == "1"


async def test_a_midstream_error_raises_the_sdks_exception(
    client: AsyncClient, direct: anthropic.AsyncAnthropic
) -> None:
    caught = []
    for sdk in (client, direct):
        received: list[str] = []
        events = await sdk.messages.create(
            model=MODEL,
            max_tokens=400,
            messages=HELLO,
            stream=True,
            **fault("midstream_error:overloaded_error"),
        )
        with pytest.raises(anthropic.APIStatusError) as error:  # noqa: PT012 - raised while iterating
            async for event in events:
                received.append(event.type)
        assert "content_block_delta" in received
        caught.append(error.value)
    assert type(caught[0]) is type(caught[1]) is anthropic.APIStatusError
    assert caught[0].status_code == caught[1].status_code == 200
    assert caught[0].body == caught[1].body


async def test_a_call_out_of_time_raises_the_sdks_timeout_and_is_abandoned(client: AsyncClient) -> None:
    began = time.perf_counter()
    with pytest.raises(anthropic.APITimeoutError):
        await client.messages.create(
            model=MODEL, max_tokens=10, messages=HELLO, timeout=0.2, **fault("slow:2")
        )
    assert time.perf_counter() - began < 1.0


async def test_an_unknown_gateway_key_is_refused_like_the_gateway_refuses_it(
    simulator_url: str, tmp_path: Path
) -> None:
    settings = client_settings(simulator_url, tmp_path)
    async with AsyncClient(settings=settings, key="cg-" + "x" * 40) as client:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.count_tokens(model=MODEL, messages=HELLO)
    error = caught.value
    assert error.status_code == 401
    assert error.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert error.response.headers["x-claudegate-origin"] == "gateway"
    assert error.request_id is not None
    assert error.request_id.startswith("req_cg_")


# -- Usage records -----------------------------------------------------------------------------------------


async def test_every_call_leaves_one_usage_record_with_its_organisation_and_user(
    simulator_url: str, tmp_path: Path
) -> None:
    settings = client_settings(simulator_url, tmp_path)
    client = AsyncClient(settings=settings, org="initech", user="bob")
    whole = await client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    async with client.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        await stream.until_done()
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(model="claude-nonexistent-9", max_tokens=10, messages=HELLO)
    await client.messages.count_tokens(model=MODEL, messages=HELLO)  # outside flow control: not metered
    await client.close()

    # Another client of the same organisation and user uses the same key.
    async with AsyncClient(settings=settings, org="initech", user="bob") as again:
        await again.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    rows = sorted(await usage_rows(settings.database_url, "initech"), key=lambda row: row["id"])
    assert [(row["status"], row["streamed"]) for row in rows] == [
        (200, False),
        (200, True),
        (404, False),
        (200, False),
    ]
    store = await Store.open(settings.database_url)
    try:
        org = await store.orgs.get_org("initech")
        assert org is not None
        user = await store.orgs.get_user(org.id, "bob")
        keys = await store.keys.list_keys(org.id)
    finally:
        await store.close()
    assert user is not None
    assert [(key.name, key.user_id) for key in keys] == [("in-process", user.id)]
    assert {(row["user_id"], row["key_id"]) for row in rows} == {(user.id, keys[0].id)}
    assert rows[0]["output_tokens"] == rows[1]["output_tokens"] == whole.usage.output_tokens
    assert rows[2]["error_type"] == "not_found_error"


async def test_a_gateway_key_makes_its_owner_the_caller(simulator_url: str, tmp_path: Path) -> None:
    settings = client_settings(simulator_url, tmp_path)
    store = await Store.open(settings.database_url)
    try:
        org = await store.orgs.create_org("umbrella")
        new_key = await store.keys.create_key(org_id=org.id, name="service")
    finally:
        await store.close()
    async with AsyncClient(settings=settings, key=new_key.key) as client:
        await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    rows = await usage_rows(settings.database_url, "umbrella")
    assert [(row["key_id"], row["user_id"], row["status"]) for row in rows] == [(new_key.row.id, None, 200)]


@pytest.mark.parametrize("how", ["close", "drop"])
async def test_a_caller_leaving_a_stream_cancels_the_upstream_call(
    slow_simulator_url: str, tmp_path: Path, how: str
) -> None:
    settings = client_settings(slow_simulator_url, tmp_path)
    async with AsyncClient(settings=settings, org="hooli") as client:
        events = await client.messages.create(
            model=MODEL,
            max_tokens=4000,
            messages=HELLO,
            stream=True,
            extra_headers={"x-simulator-reply-tokens": "2000"},  # ten seconds of stream
        )
        async for event in events:
            if event.type == "content_block_delta":
                break
        began = time.perf_counter()
        if how == "close":
            await events.close()
        else:
            del events
            gc.collect()
        # Recorded long before the reply would have ended, and while the client is still open: the caller
        # left, not the client's close().
        rows = await usage_rows(settings.database_url, "hooli", 1)
        assert time.perf_counter() - began < 3.0
    (row,) = rows
    assert (row["status"], row["error_type"], row["streamed"]) == (499, "client_disconnected", True)
    assert 0 < row["output_tokens"] < 1000


# -- Flow control --------------------------------------------------------------------------------------------


async def test_queued_calls_hear_their_place_and_a_hopeless_deadline_is_refused_at_once(
    tier1_simulator_url: str, tmp_path: Path
) -> None:
    # Tier 1 allows Sonnet 50 requests a minute; a burst of 0.04 lets 2 start at once, then one every 1.2 s.
    settings = client_settings(tier1_simulator_url, tmp_path, upstream_tier="1", flow_burst=0.04)
    heard: list[tuple[int, float]] = []
    queued = asyncio.Event()

    def on_queued(position: int, wait: float) -> None:
        heard.append((position, wait))
        queued.set()

    async with AsyncClient(settings=settings, org="twitch") as client:
        calls = [
            asyncio.create_task(
                client.messages.create(model=MODEL, max_tokens=20, messages=HELLO, on_queued=on_queued)
            )
            for _ in range(4)
        ]
        await asyncio.wait_for(queued.wait(), timeout=5)
        began = time.perf_counter()
        # Behind the four, its turn would come in about 3 s: past its deadline, so it is refused at once,
        # not when the deadline passes.
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model=MODEL, max_tokens=20, messages=HELLO, deadline_s=1.0)
        assert time.perf_counter() - began < 0.5
        replies = await asyncio.gather(*calls)
    assert all(message.stop_reason is not None for message in replies)
    assert heard
    assert all(position >= 1 and wait > 0 for position, wait in heard)
    error = caught.value
    assert error.response.headers["x-claudegate-origin"] == "gateway"
    assert float(error.response.headers["retry-after"]) >= 1
    assert error.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    statuses = sorted(row["status"] for row in await usage_rows(settings.database_url, "twitch"))
    assert statuses == [200, 200, 200, 200, 429]


# -- The synchronous client ---------------------------------------------------------------------------------


def test_the_sync_client_works_from_plain_synchronous_code(simulator_url: str, tmp_path: Path) -> None:
    settings = client_settings(simulator_url, tmp_path)
    with claudegate.Client(settings=settings, org="sync", user="carol") as client:
        message = client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
        with client.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        with client.messages.create(model=MODEL, max_tokens=100, messages=HELLO, stream=True) as events:
            kinds = [event.type for event in events]
        count = client.messages.count_tokens(model=MODEL, messages=HELLO)
        with pytest.raises(anthropic.NotFoundError):
            client.messages.create(model="claude-nonexistent-9", max_tokens=10, messages=HELLO)
    assert text == message.content[0].text  # type: ignore[union-attr]
    assert reply(final) == reply(message)
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert count.input_tokens == message.usage.input_tokens
    with sqlite3.connect(tmp_path / "claudegate.db") as db:
        statuses = sorted(status for (status,) in db.execute("SELECT status FROM usage_records"))
    assert statuses == [200, 200, 200, 404]  # written by close()
