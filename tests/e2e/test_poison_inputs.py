"""Inputs that databases choke on, sent as any key holder (or admin) could send them, on SQLite and on
PostgreSQL: a NUL character, or text longer than its column. Each gets a clear 4xx, or is stored made safe,
and none stops the usage records of the calls after it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import anthropic
import httpx2
import pytest
from pydantic import SecretStr

from tests.e2e.chat_support import ChatClient
from tests.e2e.conftest import GatewayServer, Stack, gateway_settings, make_tenant
from tests.e2e.flow_support import usage_records
from tests.servers import running_in_thread

ADMIN_TOKEN = "admin-token-for-poison-tests"
MODEL = "claude-sonnet-4-6"


@pytest.fixture(scope="module")
def gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """A gateway on the stack's database with the admin API on."""
    settings = gateway_settings(
        stack.simulator_url, stack.database_url, tmp_path_factory.mktemp("poison")
    ).model_copy(update={"admin_token": SecretStr(ADMIN_TOKEN)})
    with running_in_thread(lambda: GatewayServer(settings)) as server:
        assert isinstance(server, GatewayServer)
        yield server


async def test_poison_models_are_stored_safely_and_later_records_still_arrive(
    gateway: GatewayServer, stack: Stack
) -> None:
    tenant = await make_tenant(stack.database_url, f"poison-{uuid.uuid4().hex[:8]}")
    sdk = anthropic.AsyncAnthropic(base_url=gateway.url, api_key=tenant.key, max_retries=0)
    hello = [{"role": "user", "content": "Hello"}]
    for model in ("claude\x00-sonnet-4-6", "claude-" + "x" * 200, "\x00" * 10):
        with pytest.raises(anthropic.APIStatusError) as refused:
            await sdk.messages.create(model=model, max_tokens=10, messages=hello)  # type: ignore[arg-type]
        assert 400 <= refused.value.status_code < 500
    reply = await sdk.messages.create(model=MODEL, max_tokens=10, messages=hello)  # type: ignore[arg-type]
    assert reply.content

    rows = await usage_records(stack.database_url, [tenant.key_id], 4)
    assert len(rows) == 4
    assert [row["model"] for row in rows] == ["claude-sonnet-4-6", ("claude-" + "x" * 200)[:128], "", MODEL]
    assert rows[-1]["status"] == 200
    # Nothing had to be set aside: what the database refuses is counted where operators look.
    async with httpx2.AsyncClient(base_url=gateway.url) as http:
        metrics = (await http.get("/metrics")).text
    assert "claudegate_usage_records_rejected_total 0.0" in metrics


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/chats/chat_%00abc"),
        ("DELETE", "/chats/%00"),
        ("GET", "/chats?before=%00"),
        ("GET", "/chats?limit=1%00"),
        ("GET", "/v1/messages/batches/msgbatch_%00"),
        ("GET", "/v1/messages/batches?after_id=msgbatch_%00"),
        ("GET", "/v1/messages/batches/msgbatch_%00/results"),
        ("GET", "/v1/models/claude%00"),
        ("GET", "/admin/organizations/acme%00/users"),
        ("PATCH", "/admin/organizations/acme%00"),
        ("GET", "/admin/usage?org=acme%00"),
        ("GET", "/admin/keys?org=%00"),
    ],
)
async def test_a_nul_in_the_url_is_a_400(
    gateway: GatewayServer, stack: Stack, method: str, path: str
) -> None:
    tenant = await make_tenant(stack.database_url, f"poison-url-{uuid.uuid4().hex[:8]}")
    headers = {"x-api-key": tenant.key, "authorization": f"Bearer {ADMIN_TOKEN}"}
    if path.startswith("/admin"):
        headers.pop("x-api-key")
    async with httpx2.AsyncClient(base_url=gateway.url, headers=headers) as http:
        response = await http.request(method, path, json={} if method == "PATCH" else None)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "NUL" in error["message"]


async def test_nul_in_chat_messages_and_admin_bodies_is_a_400(gateway: GatewayServer, stack: Stack) -> None:
    tenant = await make_tenant(stack.database_url, f"poison-body-{uuid.uuid4().hex[:8]}")
    async with ChatClient(gateway.url, tenant.key) as chat:
        for sent in (
            chat.chat("Hello\x00there"),
            chat.chat([{"type": "text", "text": "\x00"}]),
            chat.chat("Hello", system="Be \x00 brief"),
            chat.chat("Hello", chat_id="chat_\x00"),
        ):
            response = await sent
            assert response.status_code == 400, response.text
            assert "NUL" in response.json()["error"]["message"]
        assert (await chat.chat("Hello")).status_code == 200  # and the next question is answered

    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx2.AsyncClient(base_url=gateway.url, headers=admin) as http:
        for path, body in (
            ("/admin/organizations", {"name": "evil\x00corp"}),
            (f"/admin/organizations/{tenant.org_name}/users", {"name": "bob\x00"}),
            ("/admin/keys", {"org": tenant.org_name, "name": "k\x00"}),
            (f"/admin/organizations/{tenant.org_name}/prompts", {"name": "p", "system": "Be\x00 kind"}),
        ):
            response = await http.post(path, json=body)
            assert response.status_code == 400, (path, response.text)
            assert "NUL" in response.json()["error"]["message"]


async def test_overlong_chat_fields_get_a_4xx(gateway: GatewayServer, stack: Stack) -> None:
    tenant = await make_tenant(stack.database_url, f"poison-long-{uuid.uuid4().hex[:8]}")
    async with ChatClient(gateway.url, tenant.key) as chat:
        for fields in (
            {"model": "claude-" + "x" * 300},
            {"prompt": "p" * 300},
            {"chat_id": "chat_" + "x" * 300},
        ):
            response = await chat.chat("Hello", **fields)
            assert 400 <= response.status_code < 500, (fields, response.text)
        long_question = await chat.chat("word " * 2000)
        assert long_question.status_code == 200, long_question.text
        async with httpx2.AsyncClient(base_url=gateway.url, headers={"x-api-key": tenant.key}) as http:
            assert (await http.get("/chats/chat_" + "x" * 300)).status_code == 404
            assert (await http.get("/chats", params={"before": "chat_" + "y" * 300})).status_code < 500


async def test_overlong_admin_fields_get_a_4xx(gateway: GatewayServer, stack: Stack) -> None:
    tenant = await make_tenant(stack.database_url, f"poison-admin-{uuid.uuid4().hex[:8]}")
    org = tenant.org_name
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx2.AsyncClient(base_url=gateway.url, headers=admin) as http:
        for path, body in (
            ("/admin/organizations", {"name": "o" * 300}),
            (f"/admin/organizations/{org}/users", {"name": "u" * 300}),
            ("/admin/keys", {"org": org, "name": "k" * 300}),
            (f"/admin/organizations/{org}/prompts", {"name": "p" * 300, "system": "Be kind."}),
            (f"/admin/organizations/{org}/prompts", {"name": "p", "system": "Be kind.", "model": "m" * 300}),
            (f"/admin/organizations/{org}/prompts", {"name": "p", "system": "Be kind.", "note": "n" * 600}),
        ):
            response = await http.post(path, json=body)
            assert 400 <= response.status_code < 500, (path, body, response.text)
        for path in (
            f"/admin/organizations/{'o' * 300}/users",
            f"/admin/organizations/{org}/prompts/{'p' * 300}",
            "/admin/usage?org=" + "o" * 300,
            "/admin/keys?org=" + "o" * 300,
        ):
            response = await http.get(path)
            assert 400 <= response.status_code < 500, (path, response.text)
