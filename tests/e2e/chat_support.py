"""What the chat API's acceptance tests share: a client over real HTTP (httpx2; streams read line by line as
server-sent events), tenants whose service key may act for end users, and direct looks at the simulator."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2
import orjson

from claudegate.store._engine import create_engine
from claudegate.store.api_keys import KeyRepository
from claudegate.store.orgs import OrgRepository
from tests.e2e.conftest import Tenant, make_tenant

MODEL = "claude-sonnet-4-6"
CHAT_ID_HEADER = "x-claudegate-chat-id"


@dataclass(slots=True)
class StreamOutcome:
    """A streamed chat turn as the client saw it: the HTTP status and headers, and every event."""

    status: int
    headers: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)
    body: bytes = b""  # for a non-stream (error) answer
    comments: int = 0

    @property
    def tokens(self) -> str:
        return "".join(event["token"] for event in self.events if not event["done"])

    @property
    def last(self) -> dict[str, Any]:
        return self.events[-1]

    def json(self) -> Any:
        return orjson.loads(self.body)


class ChatClient:
    """One caller of the chat API: a gateway key, optionally acting for an end user."""

    def __init__(self, url: str, key: str, *, user: str | None = None, timeout: float = 30) -> None:
        headers = {"x-api-key": key}
        if user is not None:
            headers["x-user-id"] = user
        self.http = httpx2.AsyncClient(base_url=url, headers=headers, timeout=timeout)

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def chat(
        self, message: Any, *, headers: dict[str, str] | None = None, **fields: Any
    ) -> httpx2.Response:
        return await self.http.post("/chat", json={"message": message, **fields}, headers=headers or {})

    async def ok(self, message: Any, **fields: Any) -> dict[str, Any]:
        response = await self.chat(message, **fields)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def stream(
        self, message: Any, *, headers: dict[str, str] | None = None, **fields: Any
    ) -> StreamOutcome:
        """A streamed turn, read as server-sent events line by line until the server ends the stream."""
        async with self.http.stream(
            "POST", "/chat/stream", json={"message": message, **fields}, headers=headers or {}
        ) as response:
            outcome = StreamOutcome(status=response.status_code, headers=dict(response.headers))
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                outcome.body = await response.aread()
                return outcome
            data_lines: list[str] = []
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    data_lines.append(line[5:].strip())
                elif line.startswith(":"):
                    outcome.comments += 1
                elif line == "" and data_lines:
                    outcome.events.append(orjson.loads("\n".join(data_lines)))
                    data_lines = []
            if data_lines:
                outcome.events.append(orjson.loads("\n".join(data_lines)))
        return outcome

    async def get(self, chat_id: str, **params: Any) -> httpx2.Response:
        return await self.http.get(f"/chats/{chat_id}", params=params)

    async def chats(self, **params: Any) -> httpx2.Response:
        return await self.http.get("/chats", params=params)

    async def delete(self, chat_id: str) -> httpx2.Response:
        return await self.http.delete(f"/chats/{chat_id}")


@dataclass(frozen=True, slots=True)
class ChatTenant:
    """An organisation with a service key (no user), a key of its user alice, and an app key that may act
    for end users (x-user-id)."""

    tenant: Tenant
    app_key: str
    app_key_id: int

    @property
    def org_id(self) -> int:
        return self.tenant.org_id

    @property
    def name(self) -> str:
        return self.tenant.org_name


async def make_chat_tenant(database_url: str, name: str) -> ChatTenant:
    tenant = await make_tenant(database_url, name)
    engine = create_engine(database_url)
    try:
        app = await KeyRepository(engine).create_key(org_id=tenant.org_id, name="app", act_for_users=True)
    finally:
        await engine.dispose()
    return ChatTenant(tenant=tenant, app_key=app.key, app_key_id=app.row.id)


async def user_id(database_url: str, org_id: int, name: str) -> int:
    engine = create_engine(database_url)
    try:
        user = await OrgRepository(engine).get_user(org_id, name)
    finally:
        await engine.dispose()
    assert user is not None
    return user.id


async def count_tokens(simulator_url: str, body: dict[str, Any]) -> int:
    """What the simulator counts for a request's input (count_tokens)."""
    async with httpx2.AsyncClient(base_url=simulator_url) as client:
        response = await client.post(
            "/v1/messages/count_tokens",
            json=body,
            headers={"x-api-key": "sk-test", "anthropic-version": "2023-06-01"},
        )
    assert response.status_code == 200, response.text
    tokens: int = response.json()["input_tokens"]
    return tokens


def sent_history(chat: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages a chat's next turn sends as history: its completed question/answer pairs."""
    messages = chat["messages"]
    replies = {m["reply_to"]: m for m in messages if m["role"] == "assistant"}
    history: list[dict[str, Any]] = []
    for message in messages:
        if message["role"] == "user" and message["id"] in replies:
            history.append({"role": "user", "content": message["content"]})
            history.append({"role": "assistant", "content": replies[message["id"]]["content"]})
    return history


async def eventually(check: Any, within: float = 5.0) -> None:
    """Wait until ``await check()`` is true (for what is written after a reply reached the client)."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
