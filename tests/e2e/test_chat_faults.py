"""Failures during a chat turn: the stream ends with an error event (never hangs), the failure is recorded on
the question, nothing half-written reaches the next turn's history, and the conversation goes on."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.e2e.chat_support import (
    CHAT_ID_HEADER,
    MODEL,
    ChatClient,
    ChatTenant,
    count_tokens,
    eventually,
    make_chat_tenant,
    sent_history,
)
from tests.e2e.conftest import Stack

FAULT = "x-simulator-fault"


@pytest.fixture
async def tenant(stack: Stack) -> ChatTenant:
    return await make_chat_tenant(stack.database_url, f"fault-{uuid.uuid4().hex[:8]}")


def question(chat: dict[str, Any], text: str) -> dict[str, Any]:
    (found,) = [m for m in chat["messages"] if m["role"] == "user" and m["content"][0]["text"] == text]
    return found


async def assert_history_is_whole(stack: Stack, client: ChatClient, chat_id: str, failed_text: str) -> None:
    """The next turn sends exactly the completed pairs: the failed question is not among them."""
    chat = (await client.get(chat_id)).json()
    history = sent_history(chat)
    assert all(m["content"][0]["text"] != failed_text for m in history if m["role"] == "user")
    follow_up = "Let us try again."
    reply = await client.ok(follow_up, chat_id=chat_id)
    expected = await count_tokens(
        stack.simulator_url,
        {
            "model": MODEL,
            "messages": [*history, {"role": "user", "content": [{"type": "text", "text": follow_up}]}],
        },
    )
    assert reply["usage"]["input_tokens"] == expected


@pytest.mark.parametrize("error_type", ["overloaded_error", "api_error"])
async def test_an_error_mid_stream_ends_the_stream_with_an_error_event(
    stack: Stack, tenant: ChatTenant, error_type: str
) -> None:
    async with ChatClient(stack.url, tenant.tenant.key) as client:
        chat_id = (await client.ok("Tell me a long story."))["chat_id"]
        text = f"Continue, and fail half way ({error_type})."
        outcome = await client.stream(text, chat_id=chat_id, headers={FAULT: f"midstream_error:{error_type}"})
        assert outcome.status == 200
        assert outcome.tokens  # some of the reply arrived before the failure
        last = outcome.last
        assert last["done"] is True
        assert last["chat_id"] == chat_id
        assert last["error"]["type"] == error_type
        assert "fullText" not in last

        chat = (await client.get(chat_id)).json()
        failed = question(chat, text)
        assert failed["status"] == "failed"
        assert failed["error"]["type"] == error_type
        assert failed["usage"]["input_tokens"] > 0  # what the failed call used is kept with it
        assert not any(m["reply_to"] == failed["id"] for m in chat["messages"])  # no half answer stored
        await assert_history_is_whole(stack, client, chat_id, text)


async def test_a_dropped_connection_mid_stream_ends_with_an_error_event(
    stack: Stack, tenant: ChatTenant
) -> None:
    async with ChatClient(stack.url, tenant.tenant.key, timeout=10) as client:
        chat_id = (await client.ok("Hello"))["chat_id"]
        text = "This reply will be cut."
        outcome = await asyncio.wait_for(
            client.stream(text, chat_id=chat_id, headers={FAULT: "drop_connection"}), timeout=10
        )
        assert outcome.status == 200
        assert outcome.last["done"] is True
        assert outcome.last["error"]["type"] == "api_error"
        chat = (await client.get(chat_id)).json()
        assert question(chat, text)["status"] == "failed"
        await assert_history_is_whole(stack, client, chat_id, text)


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [("overloaded", 529, "overloaded_error"), ("server_error", 500, "api_error")],
)
async def test_an_upstream_error_before_the_reply_is_answered_with_its_status(
    stack: Stack, tenant: ChatTenant, fault: str, status: int, error_type: str
) -> None:
    async with ChatClient(stack.url, tenant.tenant.key) as client:
        for streamed in (False, True):
            text = f"A question that fails ({fault}, streamed={streamed})"
            headers = {FAULT: fault}
            if streamed:
                outcome = await client.stream(text, headers=headers)
                assert outcome.status == status
                chat_id = outcome.headers[CHAT_ID_HEADER]
                body = outcome.json()
            else:
                response = await client.chat(text, headers=headers)
                assert response.status_code == status
                chat_id = response.headers[CHAT_ID_HEADER]
                body = response.json()
            assert body["type"] == "error"
            assert body["error"]["type"] == error_type
            # The conversation exists, holding the failed question, and can be carried on.
            chat = (await client.get(chat_id)).json()
            assert [m["status"] for m in chat["messages"]] == ["failed"]
            assert chat["messages"][0]["error"]["type"] == error_type
            reply = await client.ok("Second try", chat_id=chat_id)
            assert reply["chat_id"] == chat_id


async def test_a_rate_limited_call_keeps_retry_after(stack: Stack, tenant: ChatTenant) -> None:
    async with ChatClient(stack.url, tenant.tenant.key) as client:
        response = await client.chat("Too fast", headers={FAULT: "rate_limit:7"})
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert response.headers["retry-after"] == "7"


async def test_a_client_that_hangs_up_mid_stream(stack: Stack, slow_gateway_url: str) -> None:
    tenant = await make_chat_tenant(stack.database_url, f"hangup-{uuid.uuid4().hex[:8]}")
    text = "A slow reply I will not wait for."
    async with ChatClient(slow_gateway_url, tenant.tenant.key) as client:
        chat_id = (await client.ok("Hello"))["chat_id"]
        async with client.http.stream(
            "POST",
            "/chat/stream",
            json={"message": text, "chat_id": chat_id},
            headers={"x-simulator-reply-tokens": "200"},
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    break  # the first token arrived: hang up
        async with ChatClient(slow_gateway_url, tenant.tenant.key) as other:

            async def recorded() -> bool:
                chat = (await other.get(chat_id)).json()
                return bool(question(chat, text)["status"] == "failed")

            await eventually(recorded)
            chat = (await other.get(chat_id)).json()
            assert question(chat, text)["error"]["type"] == "client_disconnected"
            assert len(chat["messages"]) == 3


async def test_an_upstream_timeout_is_answered_not_hung(stack: Stack, tenant: ChatTenant) -> None:
    async with ChatClient(stack.url, tenant.tenant.key, timeout=10) as client:
        outcome = await asyncio.wait_for(client.stream("hi", headers={FAULT: "timeout"}), timeout=10)
    assert outcome.status == 504
    assert outcome.json()["error"]["type"] == "timeout_error"
