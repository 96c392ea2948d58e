"""Model policies: ``fast``, ``balanced``, ``deep`` (and the operator's own) as the ``model`` of a call, each
a chain of models tried in order when one is overloaded, with the policy and the serving model recorded."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import pytest

from claudegate import AsyncClient
from tests.e2e.chat_support import ChatClient, eventually, make_chat_tenant
from tests.e2e.conftest import Stack
from tests.e2e.conftest import usage_rows as gateway_usage_rows
from tests.e2e.test_inprocess_client import client_settings, usage_rows

OPUS_OVERLOADED = {"x-simulator-fault": "overloaded;model=claude-opus-4-6"}
EVERY_MODEL_OVERLOADED = {"x-simulator-fault": "overloaded"}
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
async def client(simulator_url: str, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    settings = client_settings(simulator_url, tmp_path, model_policies={"cheap-only": ["claude-opus-4-6"]})
    async with AsyncClient(settings=settings, org="routing") as client:
        yield client


async def test_a_policy_names_its_first_model(client: AsyncClient) -> None:
    message = await client.messages.create(model="deep", max_tokens=50, messages=HELLO)  # type: ignore[arg-type]
    assert message.model == "claude-opus-4-6"


async def test_a_policy_whose_first_model_is_overloaded_is_served_by_its_fallback(
    client: AsyncClient, tmp_path: Path
) -> None:
    message = await client.messages.create(
        model="deep",
        max_tokens=50,
        messages=HELLO,  # type: ignore[arg-type]
        extra_headers=OPUS_OVERLOADED,
    )
    assert message.model == "claude-sonnet-4-6"
    assert message.stop_reason == "end_turn"
    (row,) = await usage_rows(f"sqlite+aiosqlite:///{tmp_path / 'claudegate.db'}", "routing", 1)
    assert row["policy"] == "deep"
    assert row["model"] == "claude-sonnet-4-6"
    assert row["status"] == 200
    assert row["attempts"] == 2


async def test_a_policy_out_of_fallbacks_answers_the_last_models_error(
    client: AsyncClient, tmp_path: Path
) -> None:
    with pytest.raises(anthropic.InternalServerError) as raised:
        await client.messages.create(
            model="cheap-only",
            max_tokens=50,
            messages=HELLO,  # type: ignore[arg-type]
            extra_headers=OPUS_OVERLOADED,
        )
    assert raised.value.status_code == 529
    (row,) = await usage_rows(f"sqlite+aiosqlite:///{tmp_path / 'claudegate.db'}", "routing", 1)
    assert (row["policy"], row["model"], row["status"]) == ("cheap-only", "claude-opus-4-6", 529)


async def test_a_policy_whose_every_model_fails_records_the_last_model_tried(
    client: AsyncClient, tmp_path: Path
) -> None:
    with pytest.raises(anthropic.APIStatusError) as raised:
        await client.messages.create(
            model="deep",
            max_tokens=50,
            messages=HELLO,  # type: ignore[arg-type]
            extra_headers=EVERY_MODEL_OVERLOADED,
        )
    assert raised.value.status_code == 529
    (row,) = await usage_rows(f"sqlite+aiosqlite:///{tmp_path / 'claudegate.db'}", "routing", 1)
    # The answer is the fallback's error, and so is the record: the model named is the one tried last.
    assert (row["policy"], row["model"], row["status"]) == ("deep", "claude-sonnet-4-6", 529)
    assert row["attempts"] == 2


async def test_a_model_that_is_no_policy_is_sent_as_named(client: AsyncClient) -> None:
    message = await client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=50,
        messages=HELLO,  # type: ignore[arg-type]
    )
    assert message.model == "claude-sonnet-4-6"


async def test_the_gateway_takes_a_policy_as_the_model(stack: Stack) -> None:
    sdk = anthropic.AsyncAnthropic(base_url=stack.url, api_key=stack.org_a.key, max_retries=0)
    message = await sdk.messages.create(
        model="deep",
        max_tokens=50,
        messages=HELLO,
        extra_headers=OPUS_OVERLOADED,  # type: ignore[arg-type]
    )
    assert message.model == "claude-sonnet-4-6"
    async with sdk.messages.stream(model="fast", max_tokens=50, messages=HELLO) as stream:  # type: ignore[arg-type]
        final = await stream.get_final_message()
    assert final.model.startswith("claude-haiku-4-5")
    counted = await sdk.messages.count_tokens(model="deep", messages=HELLO)  # type: ignore[arg-type]
    as_opus = await sdk.messages.count_tokens(model="claude-opus-4-6", messages=HELLO)  # type: ignore[arg-type]
    assert counted.input_tokens == as_opus.input_tokens > 0

    async def fallback_recorded() -> bool:
        rows = await gateway_usage_rows(stack.database_url, [stack.org_a.key_id])
        served = {(row["request_id"], row["policy"], row["model"]) for row in rows}
        return any(entry[1:] == ("deep", "claude-sonnet-4-6") for entry in served)

    await eventually(fallback_recorded)


async def test_the_gateway_records_the_model_a_policy_tried_last(stack: Stack) -> None:
    sdk = anthropic.AsyncAnthropic(base_url=stack.url, api_key=stack.org_a.key, max_retries=0)
    served = await sdk.messages.with_raw_response.create(
        model="deep",
        max_tokens=50,
        messages=HELLO,
        extra_headers=OPUS_OVERLOADED,  # type: ignore[arg-type]
    )
    assert (await served.parse()).model == "claude-sonnet-4-6"
    failed: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as raised:
        await sdk.messages.create(
            model="deep",
            max_tokens=50,
            messages=HELLO,
            extra_headers=EVERY_MODEL_OVERLOADED,  # type: ignore[arg-type]
        )
    assert raised.value.status_code == 529
    failed.append(raised.value.response.headers["x-claudegate-request-id"])
    with pytest.raises(anthropic.APIStatusError) as raised:
        async with sdk.messages.stream(
            model="deep",
            max_tokens=50,
            messages=HELLO,
            extra_headers=EVERY_MODEL_OVERLOADED,  # type: ignore[arg-type]
        ) as stream:
            await stream.get_final_message()
    assert raised.value.status_code == 529
    failed.append(raised.value.response.headers["x-claudegate-request-id"])
    wanted = [served.headers["x-claudegate-request-id"], *failed]
    records: dict[str, dict[str, object]] = {}

    async def all_recorded() -> bool:
        rows = await gateway_usage_rows(stack.database_url, [stack.org_a.key_id])
        records.update((row["request_id"], row) for row in rows if row["request_id"] in wanted)
        return len(records) == len(wanted)

    await eventually(all_recorded)
    served_row, *failed_rows = (records[request_id] for request_id in wanted)
    assert (served_row["policy"], served_row["model"], served_row["status"]) == (
        "deep",
        "claude-sonnet-4-6",
        200,
    )
    for row in failed_rows:
        assert (row["policy"], row["model"], row["status"]) == ("deep", "claude-sonnet-4-6", 529)
        assert row["attempts"] == 2


async def test_the_chat_api_takes_a_policy_as_the_model(stack: Stack) -> None:
    tenant = await make_chat_tenant(stack.database_url, f"policy-{uuid.uuid4().hex[:8]}")
    async with ChatClient(stack.url, tenant.tenant.key) as chat:
        reply = await chat.ok("Hello", model="deep", headers=OPUS_OVERLOADED)
    assert reply["model"] == "claude-sonnet-4-6"
