"""The admin API as a Starlette app in-process (httpx2's ASGI transport), over the real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import httpx2
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import Mount

from claudegate.accounting.usage import UsageRecord
from claudegate.errors import AuthenticationError
from claudegate.keys import UNLIMITED_TENANT, KeyResolver, LimitSet
from claudegate.server.admin import AdminDeps, admin_routes
from claudegate.store import Store
from claudegate.wire.usage_tap import Usage

TOKEN = "admin-token-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def client_for(store: Store, resolver: KeyResolver, token: str | None) -> httpx2.AsyncClient:
    deps = AdminDeps(store=store, resolver=resolver, admin_token=SecretStr(token) if token else None)
    app = Starlette(routes=[Mount("/admin", routes=admin_routes(deps))])
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gateway.test")


@pytest.fixture
def resolver(store: Store) -> KeyResolver:
    return KeyResolver(store.keys, ttl_s=60)


@pytest.fixture
async def admin(store: Store, resolver: KeyResolver) -> AsyncIterator[httpx2.AsyncClient]:
    async with client_for(store, resolver, TOKEN) as client:
        yield client


def assert_error(response: httpx2.Response, status: int, error_type: str, fragment: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert fragment in body["error"]["message"]


async def test_without_a_configured_token_every_call_is_403(store: Store, resolver: KeyResolver) -> None:
    async with client_for(store, resolver, None) as client:
        for method, path in [("GET", "/admin/organizations"), ("POST", "/admin/keys"), ("GET", "/admin/x")]:
            response = await client.request(method, path, headers=AUTH)
            assert_error(response, 403, "permission_error", "CLAUDEGATE_ADMIN_TOKEN")


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"}, {"x-api-key": TOKEN}],
)
async def test_a_missing_or_wrong_token_is_401(admin: httpx2.AsyncClient, headers: dict[str, str]) -> None:
    response = await admin.get("/admin/organizations", headers=headers)
    assert_error(response, 401, "authentication_error", "admin")
    assert TOKEN not in response.text


async def test_organizations_and_users(admin: httpx2.AsyncClient) -> None:
    created = await admin.post("/admin/organizations", json={"name": "acme"}, headers=AUTH)
    assert created.status_code == 201
    assert created.json()["name"] == "acme"
    assert_error(
        await admin.post("/admin/organizations", json={"name": "acme"}, headers=AUTH),
        409,
        "invalid_request_error",
        "already exists",
    )
    listed = await admin.get("/admin/organizations", headers=AUTH)
    assert [org["name"] for org in listed.json()["data"]] == ["acme"]

    user = await admin.post("/admin/organizations/acme/users", json={"name": "alice"}, headers=AUTH)
    assert user.status_code == 201
    assert (user.json()["org"], user.json()["name"]) == ("acme", "alice")
    users = await admin.get("/admin/organizations/acme/users", headers=AUTH)
    assert [u["name"] for u in users.json()["data"]] == ["alice"]
    assert_error(
        await admin.get("/admin/organizations/nobody/users", headers=AUTH),
        404,
        "not_found_error",
        "no organization named 'nobody'",
    )


async def test_create_use_list_and_revoke_a_key(admin: httpx2.AsyncClient, resolver: KeyResolver) -> None:
    created = await admin.post("/admin/keys", json={"org": "acme", "user": "bob", "name": "ci"}, headers=AUTH)
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["key"].startswith("cg-")
    assert key["prefix"] == key["key"][:10]
    assert (key["org"], key["user"], key["name"], key["active"]) == ("acme", "bob", "ci", True)

    identity = await resolver.resolve(key["key"])  # now cached for 60 s
    assert identity.key_id == key["id"]

    listed = await admin.get("/admin/keys", params={"org": "acme"}, headers=AUTH)
    assert [k["id"] for k in listed.json()["data"]] == [key["id"]]
    assert key["key"] not in listed.text

    revoked = await admin.post(f"/admin/keys/{key['id']}/revoke", headers=AUTH)
    assert revoked.status_code == 200
    assert revoked.json()["active"] is False
    with pytest.raises(AuthenticationError):  # revocation reached the resolver's cache at once
        await resolver.resolve(key["key"])


async def test_usage_report(admin: httpx2.AsyncClient, store: Store) -> None:
    acme = await store.orgs.create_org("acme")
    await store.usage.insert_usage(
        [
            UsageRecord(
                request_id=f"r{n}",
                model="claude-opus-4-7",
                status=200 if n else 429,
                error_type=None if n else "rate_limit_error",
                org_id=acme.id,
                usage=Usage(input_tokens=100),
                cost_usd=Decimal("0.0005"),
            )
            for n in range(3)
        ]
    )
    response = await admin.get("/admin/usage", params={"org": "acme", "group_by": "model"}, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["group_by"], body["org"]) == ("model", "acme")
    (row,) = body["data"]
    assert (row["group"], row["requests"], row["errors"], row["input_tokens"]) == (
        "claude-opus-4-7",
        3,
        1,
        300,
    )
    assert Decimal(row["cost_usd"]) == Decimal("0.0015")
    since = await admin.get("/admin/usage", params={"since": "2999-01-01"}, headers=AUTH)
    assert since.json()["data"] == []


async def test_patch_an_organization(admin: httpx2.AsyncClient, store: Store) -> None:
    await admin.post("/admin/organizations", json={"name": "acme"}, headers=AUTH)
    patched = await admin.patch(
        "/admin/organizations/acme",
        json={"requests_per_minute": 600, "tokens_per_minute": 200_000, "max_concurrency": 10, "weight": 2.5},
        headers=AUTH,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["name"], body["requests_per_minute"], body["tokens_per_minute"]) == ("acme", 600, 200_000)
    assert (body["max_concurrency"], body["weight"]) == (10, 2.5)

    # Only what is given changes, and null clears.
    patched = await admin.patch(
        "/admin/organizations/acme", json={"tokens_per_minute": None, "weight": 1}, headers=AUTH
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (
        body["requests_per_minute"],
        body["tokens_per_minute"],
        body["max_concurrency"],
        body["weight"],
    ) == (
        600,
        None,
        10,
        1.0,
    )
    (listed,) = (await admin.get("/admin/organizations", headers=AUTH)).json()["data"]
    assert listed == body
    org = await store.orgs.get_org("acme")
    assert org is not None
    assert (org.limits.requests_per_minute, org.limits.max_concurrency, org.weight) == (600, 10, 1.0)


async def test_patch_a_user(admin: httpx2.AsyncClient) -> None:
    await admin.post("/admin/organizations", json={"name": "acme"}, headers=AUTH)
    await admin.post("/admin/organizations/acme/users", json={"name": "alice@example.com"}, headers=AUTH)
    await admin.post("/admin/organizations/acme/users", json={"name": "bob"}, headers=AUTH)
    patched = await admin.patch(
        "/admin/organizations/acme/users/alice@example.com",
        json={"max_concurrency": 2, "weight": 0.5},
        headers=AUTH,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["org"], body["name"], body["max_concurrency"], body["weight"]) == (
        "acme",
        "alice@example.com",
        2,
        0.5,
    )
    assert (body["requests_per_minute"], body["tokens_per_minute"]) == (None, None)
    users = {
        u["name"]: u
        for u in (await admin.get("/admin/organizations/acme/users", headers=AUTH)).json()["data"]
    }
    assert users["alice@example.com"] == body
    assert (users["bob"]["max_concurrency"], users["bob"]["weight"]) == (None, None)


async def test_patch_a_key_and_create_one_with_settings(admin: httpx2.AsyncClient) -> None:
    created = await admin.post(
        "/admin/keys", json={"org": "acme", "requests_per_minute": 60, "priority": -1}, headers=AUTH
    )
    assert created.status_code == 201, created.text
    key = created.json()
    assert (key["requests_per_minute"], key["priority"], key["deadline_ms"]) == (60, -1, None)

    patched = await admin.patch(
        f"/admin/keys/{key['id']}",
        json={"requests_per_minute": None, "max_concurrency": 3, "deadline_ms": 45_000, "priority": 5},
        headers=AUTH,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert "key" not in body
    assert (body["id"], body["prefix"], body["active"]) == (key["id"], key["prefix"], True)
    assert (body["requests_per_minute"], body["tokens_per_minute"], body["max_concurrency"]) == (
        None,
        None,
        3,
    )
    assert (body["deadline_ms"], body["priority"]) == (45_000, 5)
    (listed,) = (await admin.get("/admin/keys", headers=AUTH)).json()["data"]
    assert listed == body


async def test_a_patch_applies_at_once_to_the_gateways_key_cache(
    admin: httpx2.AsyncClient, resolver: KeyResolver
) -> None:
    created = await admin.post("/admin/keys", json={"org": "acme", "user": "alice"}, headers=AUTH)
    key = created.json()
    assert (await resolver.resolve(key["key"])).settings == UNLIMITED_TENANT  # cached for 60 s from now

    await admin.patch(
        f"/admin/keys/{key['id']}",
        json={"deadline_ms": 2000, "priority": 4, "cache_replies": True},
        headers=AUTH,
    )
    identity = await resolver.resolve(key["key"])
    assert (identity.settings.deadline_ms, identity.settings.priority) == (2000, 4)
    assert identity.cache_replies is True
    settings = identity.settings

    await admin.patch(
        "/admin/organizations/acme", json={"requests_per_minute": 90, "weight": 3}, headers=AUTH
    )
    settings = (await resolver.resolve(key["key"])).settings
    assert (settings.org, settings.org_weight) == (LimitSet(requests_per_minute=90), 3.0)

    await admin.patch("/admin/organizations/acme/users/alice", json={"tokens_per_minute": 5000}, headers=AUTH)
    settings = (await resolver.resolve(key["key"])).settings
    assert settings.user == LimitSet(tokens_per_minute=5000)
    assert (settings.deadline_ms, settings.org_weight) == (2000, 3.0)


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        (
            "/admin/organizations/acme",
            {"requests_per_minute": 0},
            "requests_per_minute: must be a whole number",
        ),
        (
            "/admin/organizations/acme",
            {"tokens_per_minute": "1000"},
            "tokens_per_minute: must be a whole number",
        ),
        ("/admin/organizations/acme", {"max_concurrency": True}, "max_concurrency: must be a whole number"),
        ("/admin/organizations/acme", {"max_concurrency": 2.5}, "max_concurrency: must be a whole number"),
        ("/admin/organizations/acme", {"weight": 0}, "weight: must be a number from 0.000001"),
        ("/admin/organizations/acme", {"weight": -2}, "weight: must be a number"),
        ("/admin/organizations/acme", {"rpm": 10}, "rpm: not a setting here; use requests_per_minute"),
        ("/admin/organizations/acme", {"priority": 1}, "priority: not a setting here"),
        ("/admin/organizations/acme", ["weight"], "must be a JSON object"),
        ("/admin/organizations/acme/users/alice", {"weight": "heavy"}, "weight: must be a number"),
        ("/admin/organizations/acme/users/alice", {"deadline_ms": 5}, "deadline_ms: not a setting here"),
        ("/admin/keys/1", {"deadline_ms": 0}, "deadline_ms: must be a whole number from 1"),
        ("/admin/keys/1", {"priority": 1.5}, "priority: must be a whole number"),
        ("/admin/keys/1", {"cache_replies": "on"}, "cache_replies: must be true or false"),
        ("/admin/keys/1", {"weight": 2}, "weight: not a setting here; use requests_per_minute"),
        ("/admin/keys/one", {"priority": 1}, "key id must be an integer"),
    ],
)
async def test_bad_settings_are_400_naming_the_field_and_change_nothing(
    admin: httpx2.AsyncClient, store: Store, path: str, body: object, fragment: str
) -> None:
    await admin.post("/admin/keys", json={"org": "acme", "user": "alice"}, headers=AUTH)
    before = (await admin.get("/admin/keys", headers=AUTH)).json()
    response = await admin.patch(path, json=body, headers=AUTH)
    assert_error(response, 400, "invalid_request_error", fragment)
    assert (await admin.get("/admin/keys", headers=AUTH)).json() == before
    org = await store.orgs.get_org("acme")
    assert org is not None
    assert (org.limits, org.weight) == (LimitSet(), None)


async def test_creating_a_key_with_a_bad_setting_creates_nothing(admin: httpx2.AsyncClient) -> None:
    response = await admin.post(
        "/admin/keys", json={"org": "acme", "user": "al", "priority": "high"}, headers=AUTH
    )
    assert_error(response, 400, "invalid_request_error", "priority: must be a whole number")
    assert (await admin.get("/admin/organizations", headers=AUTH)).json()["data"] == []


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/admin/organizations/nobody", "no organization named 'nobody'"),
        ("/admin/organizations/nobody/users/alice", "no organization named 'nobody'"),
        ("/admin/organizations/acme/users/nobody", "no user named 'nobody' in organization 'acme'"),
        ("/admin/keys/999", "no key with id 999"),
        ("/admin/keys/99999999999", "no key with id 99999999999"),
    ],
)
async def test_patching_something_unknown_is_404(admin: httpx2.AsyncClient, path: str, fragment: str) -> None:
    await admin.post("/admin/organizations", json={"name": "acme"}, headers=AUTH)
    response = await admin.patch(path, json={"max_concurrency": 2}, headers=AUTH)
    assert_error(response, 404, "not_found_error", fragment)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "fragment"),
    [
        ("POST", "/admin/organizations", {"content": b"{not json"}, 400, "must be a JSON object"),
        ("POST", "/admin/organizations", {"json": ["acme"]}, 400, "must be a JSON object"),
        ("POST", "/admin/organizations", {"json": {}}, 400, "name: field required"),
        ("POST", "/admin/organizations", {"json": {"name": 5}}, 400, "name: must be a string"),
        ("POST", "/admin/organizations", {"json": {"name": "a b"}}, 400, "is not allowed"),
        ("POST", "/admin/keys", {"json": {"user": "x"}}, 400, "org: field required"),
        ("POST", "/admin/keys", {"json": {"org": "acme", "name": ""}}, 400, "key name must be"),
        ("POST", "/admin/keys/abc/revoke", {}, 400, "key id must be an integer"),
        ("POST", "/admin/keys/999/revoke", {}, 404, "no key with id 999"),
        ("POST", "/admin/keys/99999999999/revoke", {}, 404, "no key with id 99999999999"),
        ("GET", "/admin/usage", {"params": {"group_by": "week"}}, 400, "group_by must be one of"),
        ("GET", "/admin/usage", {"params": {"since": "yesterday"}}, 400, "since must be a date"),
        ("GET", "/admin/usage", {"params": {"org": "nobody"}}, 404, "no organization named"),
        ("GET", "/admin/keys", {"params": {"org": "nobody"}}, 404, "no organization named"),
        ("DELETE", "/admin/keys", {}, 405, "use GET, POST"),
        ("GET", "/admin/keys/1", {}, 405, "use PATCH"),
        ("POST", "/admin/organizations/acme", {}, 405, "use PATCH"),
        ("GET", "/admin/nothing/here", {}, 404, "no admin endpoint"),
    ],
)
async def test_bad_requests_get_the_anthropic_envelope_and_never_a_500(
    admin: httpx2.AsyncClient, method: str, path: str, kwargs: dict[str, object], status: int, fragment: str
) -> None:
    response = await admin.request(method, path, headers=AUTH, **kwargs)
    error_type = {400: "invalid_request_error", 404: "not_found_error", 405: "invalid_request_error"}[status]
    assert_error(response, status, error_type, fragment)
