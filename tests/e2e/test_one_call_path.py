"""Every front door describes its calls the same way (``pipeline.describe``): the same bad input gets the same
error from the gateway (Anthropic's and OpenAI's API), the in-process client and the chat API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import pytest
from sqlalchemy import select

from claudegate import AsyncClient
from claudegate.store._engine import create_engine
from claudegate.store.tables import UsageRow
from tests.e2e.chat_support import ChatClient, ChatTenant, eventually, make_chat_tenant
from tests.e2e.conftest import Stack, gateway_settings

MODEL = "claude-sonnet-4-6"
HELLO = [{"role": "user", "content": "Hello"}]
VERSION = {"anthropic-version": "2023-06-01"}
BAD_DEADLINE = "x-claudegate-deadline-ms: expected a positive whole number of milliseconds"


@pytest.fixture
async def tenant(stack: Stack) -> ChatTenant:
    return await make_chat_tenant(stack.database_url, f"one-path-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
async def client(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AsyncClient]:
    settings = gateway_settings(stack.simulator_url, stack.database_url, tmp_path_factory.mktemp("client"))
    async with AsyncClient(settings=settings, org="one-call-path-client") as client:
        yield client


async def gateway_message(stack: Stack, key: str, body: dict[str, Any], headers: dict[str, str]) -> str:
    async with httpx2.AsyncClient(base_url=stack.url, timeout=30) as http:
        response = await http.post(
            "/v1/messages", json=body, headers={"x-api-key": key, **VERSION, **headers}
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    message: str = response.json()["error"]["message"]
    return message


async def client_message(client: AsyncClient, **params: Any) -> str:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(**{"model": MODEL, "max_tokens": 20, "messages": HELLO, **params})
    message: str = caught.value.body["error"]["message"]  # type: ignore[index]
    return message


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
async def test_a_bad_deadline_gets_the_same_error_at_every_door(
    stack: Stack, tenant: ChatTenant, client: AsyncClient, value: str
) -> None:
    header = {"x-claudegate-deadline-ms": value}
    key = tenant.tenant.key
    body = {"model": MODEL, "max_tokens": 20, "messages": HELLO}
    assert await gateway_message(stack, key, body, header) == BAD_DEADLINE
    async with httpx2.AsyncClient(base_url=stack.url, timeout=30) as http:
        openai = await http.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}", **header}
        )
    assert openai.status_code == 400, openai.text
    assert openai.json()["error"]["message"] == BAD_DEADLINE
    async with ChatClient(stack.url, key) as chat:
        refused = await chat.chat("Hello", headers=header)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["message"] == BAD_DEADLINE
    assert await client_message(client, extra_headers=header) == BAD_DEADLINE


async def test_a_bad_deadline_argument_is_the_sdks_bad_request(client: AsyncClient) -> None:
    message = await client_message(client, deadline_s=0)
    assert message.startswith("deadline_s: expected a positive number of seconds")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"max_tokens": "20"}, "max_tokens: Input should be a valid integer"),
        ({"max_tokens": -1}, "max_tokens: Input should be greater than or equal to 0"),
        ({"stream": "yes"}, "stream: Input should be a valid boolean"),
    ],
)
async def test_a_bad_field_gets_the_same_error_from_the_gateway_and_the_client(
    stack: Stack, tenant: ChatTenant, client: AsyncClient, change: dict[str, Any], expected: str
) -> None:
    body = {"model": MODEL, "max_tokens": 20, "messages": HELLO, **change}
    assert await gateway_message(stack, tenant.tenant.key, body, {}) == expected
    assert await client_message(client, extra_body=change) == expected


async def recorded(database_url: str, request_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The usage records of these calls by request id, once all are written (the writer flushes often)."""
    records: dict[str, dict[str, Any]] = {}

    async def all_written() -> bool:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(UsageRow.__table__).where(UsageRow.request_id.in_(request_ids))
                )
                records.update((row.request_id, dict(row._mapping)) for row in rows)
        finally:
            await engine.dispose()
        return len(records) == len(request_ids)

    await eventually(all_written)
    return records


async def test_a_call_refused_for_bad_input_is_recorded_under_the_model_it_named(
    stack: Stack, tenant: ChatTenant, client: AsyncClient
) -> None:
    key = tenant.tenant.key
    bad_deadline = {"x-claudegate-deadline-ms": "soon"}
    body = {"model": MODEL, "max_tokens": 20, "messages": HELLO}
    async with httpx2.AsyncClient(base_url=stack.url, timeout=30) as http:
        answers = {
            "deadline": await http.post(
                "/v1/messages", json=body, headers={"x-api-key": key, **VERSION, **bad_deadline}
            ),
            "field": await http.post(
                "/v1/messages",
                json={**body, "model": "deep", "max_tokens": "20"},
                headers={"x-api-key": key, **VERSION},
            ),
            "no model id": await http.post(
                "/v1/messages",
                json={**body, "model": "not a model\n", "max_tokens": "20"},
                headers={"x-api-key": key, **VERSION},
            ),
            "openai": await http.post(
                "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}", **bad_deadline}
            ),
        }
    assert {answer.status_code for answer in answers.values()} == {400}
    ids = {door: answer.headers["x-claudegate-request-id"] for door, answer in answers.items()}
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(model=MODEL, max_tokens=20, messages=HELLO, extra_headers=bad_deadline)
    ids["client"] = caught.value.response.headers["x-claudegate-request-id"]
    records = await recorded(stack.database_url, list(ids.values()))
    rows = {door: records[request_id] for door, request_id in ids.items()}
    named = {door: (row["policy"], row["model"], row["status"]) for door, row in rows.items()}
    assert named == {
        "deadline": (None, MODEL, 400),
        "field": ("deep", "claude-opus-4-6", 400),  # a policy: recorded as its first model would be sent
        "no model id": (None, None, 400),  # not a model id: nothing to name
        "openai": (None, MODEL, 400),
        "client": (None, MODEL, 400),
    }
