"""Every front door describes its calls the same way (``pipeline.describe``): the same bad input gets the same
error from the gateway (Anthropic's and OpenAI's API), the in-process client and the chat API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import pytest

from claudegate import AsyncClient
from tests.e2e.chat_support import ChatClient, ChatTenant, make_chat_tenant
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
