"""The chat API over real HTTP, on SQLite and PostgreSQL: conversations that keep their context, streams
read as server-sent events, stored messages, pagination, deletion, and isolation between organisations and
users."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from claudegate.store._engine import create_engine
from claudegate.store.tables import ChatMessage
from tests.e2e.chat_support import (
    CHAT_ID_HEADER,
    MODEL,
    ChatClient,
    ChatTenant,
    count_tokens,
    make_chat_tenant,
    sent_history,
    user_id,
)
from tests.e2e.conftest import Stack


@pytest.fixture
async def tenant(stack: Stack) -> ChatTenant:
    return await make_chat_tenant(stack.database_url, f"chat-{uuid.uuid4().hex[:8]}")


async def test_a_conversation_keeps_its_context(stack: Stack, tenant: ChatTenant) -> None:
    async with ChatClient(stack.url, tenant.tenant.key) as client:
        first = await client.ok("Hello! My name is Ada and I like sailing.")
        chat_id = first["chat_id"]
        assert chat_id.startswith("chat_")
        assert first["reply"]
        assert first["message_id"].startswith("cmsg_")
        assert (
            first["usage"]["total_tokens"] == first["usage"]["input_tokens"] + first["usage"]["output_tokens"]
        )

        second = await client.ok("What do I like doing?", chat_id=chat_id)
        third_question = "And what is my name?"
        chat_before = (await client.get(chat_id)).json()
        third = await client.ok(third_question, chat_id=chat_id)
        assert second["chat_id"] == third["chat_id"] == chat_id

    # The model was sent the whole conversation: the third call's input is exactly what the simulator counts
    # for both earlier turns and the new question.
    history = sent_history(chat_before)
    assert len(history) == 4
    expected = await count_tokens(
        stack.simulator_url,
        {
            "model": MODEL,
            "messages": [*history, {"role": "user", "content": [{"type": "text", "text": third_question}]}],
        },
    )
    assert third["usage"]["input_tokens"] == expected
    assert first["usage"]["input_tokens"] < second["usage"]["input_tokens"] < third["usage"]["input_tokens"]


async def test_every_message_is_stored_with_its_blocks_tokens_cost_and_times(
    stack: Stack, tenant: ChatTenant
) -> None:
    async with ChatClient(stack.url, tenant.tenant.key) as client:
        reply = await client.ok("Tell me about the sea.", max_tokens=64)
        response = await client.get(reply["chat_id"])
    assert response.status_code == 200
    assert response.headers[CHAT_ID_HEADER] == reply["chat_id"]
    chat = response.json()
    assert (chat["id"], chat["type"], chat["title"], chat["model"], chat["prompt"]) == (
        reply["chat_id"],
        "chat",
        "Tell me about the sea.",
        MODEL,
        None,
    )
    question, answer = chat["messages"]
    assert question["role"] == "user"
    assert question["status"] == "ok"
    assert question["content"] == [{"type": "text", "text": "Tell me about the sea."}]
    assert question["tokens"] > 0
    assert question["completed_at"] >= question["created_at"]
    assert answer["role"] == "assistant"
    assert answer["status"] == "ok"
    assert answer["id"] == reply["message_id"]
    assert answer["reply_to"] == question["id"]
    assert answer["content"] == [{"type": "text", "text": reply["reply"]}]
    assert (answer["model"], answer["stop_reason"]) == (MODEL, reply["stop_reason"])
    assert answer["usage"]["output_tokens"] == reply["usage"]["output_tokens"]
    assert answer["usage"]["input_tokens"] == reply["usage"]["input_tokens"]
    assert Decimal(answer["cost_usd"]) > 0
    assert answer["created_at"] == reply["created_at"]
    assert answer["request_id"] == question["request_id"]
    assert chat["has_more"] is False
    assert chat["first_id"] == question["id"]
    assert chat["last_id"] == answer["id"]


async def test_a_streamed_turn(stack: Stack, tenant: ChatTenant) -> None:
    async with ChatClient(stack.url, tenant.tenant.key) as client:
        first = await client.ok("Start a story about a lighthouse.")
        outcome = await client.stream("Go on with the story, please.", chat_id=first["chat_id"])
        assert outcome.status == 200, outcome.body
        assert outcome.headers["content-type"].startswith("text/event-stream")
        assert outcome.headers[CHAT_ID_HEADER] == first["chat_id"]
        tokens = [event for event in outcome.events if not event["done"]]
        assert len(tokens) > 1
        assert all(set(event) == {"token", "done"} for event in tokens)
        last = outcome.last
        assert last["done"] is True
        assert last["token"] == ""
        assert last["chat_id"] == first["chat_id"]
        assert last["fullText"] == outcome.tokens
        assert last["usage"]["output_tokens"] > 0
        assert last["usage"]["total_tokens"] == last["usage"]["input_tokens"] + last["usage"]["output_tokens"]
        chat = (await client.get(first["chat_id"])).json()
        # The streamed reply is stored like any other, and the conversation goes on after it.
        assert chat["messages"][-1]["id"] == last["message_id"]
        assert chat["messages"][-1]["content"] == [{"type": "text", "text": outcome.tokens}]
        after = await client.ok("And then?", chat_id=first["chat_id"])
        assert after["usage"]["input_tokens"] > last["usage"]["input_tokens"]


async def test_a_new_conversation_can_start_with_a_stream(stack: Stack, tenant: ChatTenant) -> None:
    async with ChatClient(stack.url, tenant.tenant.user_key) as client:
        outcome = await client.stream([{"type": "text", "text": "Hi from a content block"}])
        assert outcome.status == 200
        assert outcome.last["done"] is True
        listed = (await client.chats()).json()
    assert outcome.last["chat_id"] in [chat["id"] for chat in listed["data"]]


async def test_chats_and_messages_are_paginated(stack: Stack, tenant: ChatTenant) -> None:
    async with ChatClient(stack.url, tenant.tenant.user_key) as client:
        ids = [(await client.ok(f"Conversation {index}"))["chat_id"] for index in range(5)]
        newest_first = list(reversed(ids))
        page = (await client.chats(limit=2)).json()
        assert [chat["id"] for chat in page["data"]] == newest_first[:2]
        assert page["has_more"] is True
        assert page["last_id"] == newest_first[1]
        page = (await client.chats(limit=2, after_id=page["last_id"])).json()
        assert [chat["id"] for chat in page["data"]] == newest_first[2:4]
        page = (await client.chats(limit=10, after_id=page["last_id"])).json()
        assert [chat["id"] for chat in page["data"]] == newest_first[4:]
        assert page["has_more"] is False
        page = (await client.chats(limit=2, before_id=newest_first[4])).json()
        assert [chat["id"] for chat in page["data"]] == newest_first[2:4]
        assert page["has_more"] is True

        chat_id = ids[0]
        for index in range(2):
            await client.ok(f"Follow-up {index}", chat_id=chat_id)
        everything = (await client.get(chat_id)).json()["messages"]
        assert [m["role"] for m in everything] == ["user", "assistant"] * 3
        page = (await client.get(chat_id, limit=4)).json()
        assert [m["id"] for m in page["messages"]] == [m["id"] for m in everything[:4]]
        assert page["has_more"] is True
        page = (await client.get(chat_id, limit=4, after_id=page["last_id"])).json()
        assert [m["id"] for m in page["messages"]] == [m["id"] for m in everything[4:]]
        assert page["has_more"] is False
        page = (await client.get(chat_id, limit=2, before_id=everything[4]["id"])).json()
        assert [m["id"] for m in page["messages"]] == [m["id"] for m in everything[2:4]]

        bad = await client.chats(limit=0)
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_request_error"


async def test_a_deleted_chat_is_gone_and_its_content_erased(stack: Stack, tenant: ChatTenant) -> None:
    async with ChatClient(stack.url, tenant.tenant.key) as client:
        reply = await client.ok("Something private")
        chat_id = reply["chat_id"]
        deleted = await client.delete(chat_id)
        assert deleted.status_code == 200
        assert deleted.json() == {"id": chat_id, "type": "chat_deleted"}
        for response in (
            await client.get(chat_id),
            await client.delete(chat_id),
            await client.chat("more", chat_id=chat_id),
        ):
            assert response.status_code == 404
            assert response.json()["error"]["type"] == "not_found_error"
        assert chat_id not in [chat["id"] for chat in (await client.chats(limit=1000)).json()["data"]]
    engine = create_engine(stack.database_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(ChatMessage.content, ChatMessage.output_tokens).where(
                        ChatMessage.conversation_id == chat_id
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert [row[0] for row in rows] == [[], []]  # the text is gone
    assert sum(row[1] for row in rows) == reply["usage"]["output_tokens"]  # the accounting stays


async def test_organisations_and_users_never_see_each_others_chats(stack: Stack) -> None:
    a = await make_chat_tenant(stack.database_url, f"iso-a-{uuid.uuid4().hex[:8]}")
    b = await make_chat_tenant(stack.database_url, f"iso-b-{uuid.uuid4().hex[:8]}")
    async with (
        ChatClient(stack.url, a.tenant.key) as a_service,
        ChatClient(stack.url, a.tenant.user_key) as alice,
        ChatClient(stack.url, a.app_key, user="bob") as bob,
        ChatClient(stack.url, a.app_key, user="carol") as carol,
        ChatClient(stack.url, b.tenant.key) as b_service,
        ChatClient(stack.url, b.app_key, user="bob") as b_bob,
    ):
        alices = (await alice.ok("Alice's secret"))["chat_id"]
        bobs = (await bob.ok("Bob's secret"))["chat_id"]
        services = (await a_service.ok("The service's own chat"))["chat_id"]

        async def hidden(client: ChatClient, chat_id: str) -> None:
            for response in (
                await client.get(chat_id),
                await client.chat("let me in", chat_id=chat_id),
                await client.delete(chat_id),
            ):
                assert response.status_code == 404, response.text
                assert response.json()["error"]["type"] == "not_found_error"
            streamed = await client.stream("let me in", chat_id=chat_id)
            assert streamed.status == 404
            assert chat_id not in [chat["id"] for chat in (await client.chats(limit=1000)).json()["data"]]

        # Another organisation sees nothing, whatever its key and whoever it acts for.
        for outsider in (b_service, b_bob):
            for chat_id in (alices, bobs, services):
                await hidden(outsider, chat_id)
        # A user sees only their own chats; an end user only theirs.
        await hidden(alice, bobs)
        await hidden(alice, services)
        await hidden(bob, alices)
        await hidden(carol, bobs)
        # The organisation's own key sees all of its chats.
        listed = {chat["id"]: chat["user"] for chat in (await a_service.chats(limit=1000)).json()["data"]}
        assert {alices: "alice", bobs: "bob", services: None}.items() <= listed.items()
        assert (await a_service.get(bobs)).status_code == 200
        # And each user keeps working in their own chat.
        assert (await bob.ok("Still me", chat_id=bobs))["chat_id"] == bobs
        assert [chat["id"] for chat in (await bob.chats()).json()["data"]] == [bobs]
        # The same end-user name in another organisation is another person.
        assert (await b_bob.chats()).json()["data"] == []

    # Bob, an end user, was created as a user of organisation A on first use; the call was his.
    assert await user_id(stack.database_url, a.org_id, "bob") > 0


async def test_acting_for_an_end_user_needs_permission(stack: Stack, tenant: ChatTenant) -> None:
    for key in (tenant.tenant.key, tenant.tenant.user_key):
        async with ChatClient(stack.url, key, user="mallory") as client:
            for response in (await client.chat("hi"), await client.chats()):
                assert response.status_code == 403
                body = response.json()
                assert body["error"]["type"] == "permission_error"
                assert "x-user-id" in body["error"]["message"]
    async with ChatClient(stack.url, tenant.app_key, user="not a valid name!") as client:
        response = await client.chat("hi")
        assert response.status_code == 400
        assert "user name" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({}, 400, "message: field required"),
        ({"message": ""}, 400, "message: must not be empty"),
        ({"message": "hi", "colour": "red"}, 400, "colour: Extra inputs"),
        ({"message": "hi", "max_tokens": 0}, 400, "max_tokens"),
        ({"message": "hi", "chat_id": "chat_doesnotexist"}, 404, "chat chat_doesnotexist not found"),
        ({"message": "hi", "prompt": "nope"}, 400, "no prompt named 'nope'"),
        ({"message": [{"text": "no type"}]}, 400, "content blocks"),
    ],
)
async def test_bad_requests_get_anthropic_errors(
    stack: Stack, tenant: ChatTenant, body: dict[str, Any], status: int, fragment: str
) -> None:
    async with ChatClient(stack.url, tenant.tenant.key) as client:
        for path in ("/chat", "/chat/stream"):
            response = await client.http.post(path, json=body)
            assert response.status_code == status, response.text
            assert response.headers["x-claudegate-origin"] == "gateway"
            assert fragment in response.json()["error"]["message"]


async def test_routes_methods_and_keys(stack: Stack, tenant: ChatTenant) -> None:
    async with ChatClient(stack.url, tenant.tenant.key) as client:
        assert (await client.http.get("/chat")).status_code == 405
        assert (await client.http.post("/chats")).status_code == 405
        assert (await client.http.put("/chats/x")).status_code == 405
        assert (await client.http.get("/chats/a/b")).status_code == 404
    async with ChatClient(stack.url, "cg-" + "x" * 40) as stranger:
        response = await stranger.chat("hi")
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert (await stranger.chats()).status_code == 401


async def test_concurrent_turns_in_one_chat_keep_questions_with_their_answers(
    stack: Stack, tenant: ChatTenant
) -> None:
    async with ChatClient(stack.url, tenant.tenant.key) as client:
        chat_id = (await client.ok("Let us talk about rivers."))["chat_id"]
        replies = await asyncio.gather(
            *(client.ok(f"Question {index}", chat_id=chat_id) for index in range(5))
        )
        assert {reply["chat_id"] for reply in replies} == {chat_id}
        chat = (await client.get(chat_id)).json()
    by_id = {message["id"]: message for message in chat["messages"]}
    answers = [message for message in chat["messages"] if message["role"] == "assistant"]
    assert len(answers) == 6
    assert {by_id[answer["reply_to"]]["role"] for answer in answers} == {"user"}
    assert len({answer["reply_to"] for answer in answers}) == 6
