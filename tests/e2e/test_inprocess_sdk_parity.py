"""The in-process client's surface beyond ``messages``: ``models``, ``beta.messages``, as the SDK's."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import pytest
from anthropic.types.beta import BetaMessage

from claudegate import AsyncClient, Client
from tests.e2e.chat_support import eventually
from tests.e2e.test_inprocess_client import client_settings, reply, usage_rows


@pytest.fixture
async def client(simulator_url: str, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(settings=client_settings(simulator_url, tmp_path), org="parity") as client:
        yield client


@pytest.fixture
def direct(simulator_url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=simulator_url, api_key=f"sk-{uuid.uuid4().hex}", max_retries=0)


async def test_models_list_and_retrieve_as_the_sdk(
    client: AsyncClient, direct: anthropic.AsyncAnthropic
) -> None:
    page = await client.models.list(limit=3)
    theirs = await direct.models.list(limit=3)
    assert [model.id for model in page.data] == [model.id for model in theirs.data]
    assert page.has_more is theirs.has_more is True
    everything = [model.id async for model in page]
    assert everything == [model.id async for model in await direct.models.list(limit=3)]
    assert len(everything) > 3

    sonnet = await client.models.retrieve("claude-sonnet-4-6")
    assert sonnet.model_dump() == (await direct.models.retrieve("claude-sonnet-4-6")).model_dump()
    with pytest.raises(anthropic.NotFoundError):
        await client.models.retrieve("claude-nonesuch-1")


async def test_beta_messages_create_gives_a_beta_message(
    client: AsyncClient, direct: anthropic.AsyncAnthropic
) -> None:
    params = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hello"}],
        "betas": ["context-management-2025-06-27"],
    }
    ours = await client.beta.messages.create(**params)
    theirs = await direct.beta.messages.create(**params)  # type: ignore[arg-type]
    assert isinstance(ours, BetaMessage)
    assert reply(ours) == reply(theirs)
    counted = await client.beta.messages.count_tokens(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "Hello"}]
    )
    assert counted.input_tokens > 0


def test_the_sync_client_lists_models(simulator_url: str, tmp_path: Path) -> None:
    with Client(settings=client_settings(simulator_url, tmp_path), org="parity-sync") as client:
        page = client.models.list(limit=2)
        model = client.models.retrieve(page.data[0].id)
    assert len(page.data) == 2
    assert model.id == page.data[0].id


async def test_with_raw_response_gives_the_status_headers_and_reply(client: AsyncClient) -> None:
    raw = await client.messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "Hello"}]
    )
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("application/json")
    message = raw.parse()
    assert isinstance(message, anthropic.types.Message)
    assert raw.request_id == message._request_id
    assert raw.request_id is not None


async def test_with_options_sets_defaults_for_every_call_and_shares_the_services(
    client: AsyncClient,
) -> None:
    overloaded = client.with_options(default_headers={"x-simulator-fault": "overloaded"})
    with pytest.raises(anthropic.InternalServerError) as raised:
        await overloaded.messages.create(
            model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "Hello"}]
        )
    assert raised.value.status_code == 529
    assert await overloaded.open() is await client.open()
    await overloaded.close()  # closes nothing: the client it came from goes on
    message = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "Hello"}]
    )
    assert message.stop_reason == "end_turn"


def test_the_sync_client_has_raw_responses_and_options(simulator_url: str, tmp_path: Path) -> None:
    with Client(settings=client_settings(simulator_url, tmp_path), org="parity-sync2") as client:
        raw = client.with_options(timeout=30).messages.with_raw_response.create(
            model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
        )
        assert raw.status_code == 200
        assert raw.parse().stop_reason == "end_turn"  # type: ignore[union-attr]


async def test_batches_run_through_the_gateways_batch_code(simulator_url: str, tmp_path: Path) -> None:
    settings = client_settings(simulator_url, tmp_path)
    request = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    async with AsyncClient(settings=settings, org="batcher") as client:
        batch = await client.messages.batches.create(
            requests=[{"custom_id": "one", "params": request}, {"custom_id": "two", "params": request}]
        )
        assert batch.id.startswith("msgbatch_")
        assert [found.id for found in (await client.messages.batches.list()).data] == [batch.id]

        async def ended() -> bool:
            return (await client.messages.batches.retrieve(batch.id)).processing_status == "ended"

        await eventually(ended)
        results = [result async for result in client.messages.batches.results(batch.id)]
        assert sorted(result.custom_id for result in results) == ["one", "two"]
        assert {result.result.type for result in results} == {"succeeded"}
        async with AsyncClient(settings=settings, org="someone-else") as other:
            with pytest.raises(anthropic.NotFoundError):
                await other.messages.batches.retrieve(batch.id)
            assert (await other.messages.batches.list()).data == []
    rows = await usage_rows(f"sqlite+aiosqlite:///{tmp_path / 'claudegate.db'}", "batcher", 2)
    assert {row["batch"] for row in rows} == {True}


def test_the_sync_client_lists_its_batches(simulator_url: str, tmp_path: Path) -> None:
    request = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    with Client(settings=client_settings(simulator_url, tmp_path), org="batcher-sync") as client:
        batch = client.messages.batches.create(requests=[{"custom_id": "a", "params": request}])
        assert client.messages.batches.retrieve(batch.id).id == batch.id
        assert [found.id for found in client.messages.batches.list().data] == [batch.id]
