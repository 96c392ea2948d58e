"""The admin API's prompt versions, budgets and the act_for_users key setting, in-process over the real store
(SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import httpx2
import pytest

from claudegate.accounting.usage import UsageRecord
from claudegate.keys import BudgetCaps, KeyResolver, hash_key
from claudegate.store import Store
from claudegate.wire.usage_tap import Usage
from tests.integration.test_admin_api import AUTH, assert_error, client_for


@pytest.fixture
def resolver(store: Store) -> KeyResolver:
    return KeyResolver(store.keys, ttl_s=60)


@pytest.fixture
async def admin(store: Store, resolver: KeyResolver) -> AsyncIterator[httpx2.AsyncClient]:
    async with client_for(store, resolver, "admin-token-for-tests") as client:
        await client.post("/admin/organizations", json={"name": "acme"}, headers=AUTH)
        yield client


async def test_prompt_versions_activation_split_rollback(admin: httpx2.AsyncClient) -> None:
    base = "/admin/organizations/acme/prompts"
    created = await admin.post(
        base, json={"name": "support", "system": "Be kind.", "note": "v1"}, headers=AUTH
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["name"], body["active_version"], body["latest_version"]) == ("support", 1, 1)
    assert body["version"] == {
        "version": 1,
        "model": None,
        "note": "v1",
        "created_at": body["version"]["created_at"],
        "system": "Be kind.",
    }
    # A second version is not active until asked; the third is activated at once.
    second = await admin.post(
        f"{base}/support/versions", json={"system": "Be brief.", "model": "claude-opus-4-8"}, headers=AUTH
    )
    assert (second.status_code, second.json()["active_version"], second.json()["latest_version"]) == (
        201,
        1,
        2,
    )
    third = await admin.post(
        f"{base}/support/versions", json={"system": "Be both.", "activate": True}, headers=AUTH
    )
    assert (third.json()["active_version"], third.json()["previous_version"]) == (3, 1)

    rolled = await admin.post(f"{base}/support/rollback", headers=AUTH)
    assert (rolled.json()["active_version"], rolled.json()["previous_version"]) == (1, 3)
    activated = await admin.post(f"{base}/support/activate", json={"version": 2}, headers=AUTH)
    assert activated.json()["active_version"] == 2

    split = await admin.put(f"{base}/support/split", json={"weights": {"1": 30, "3": 70}}, headers=AUTH)
    assert split.status_code == 200
    assert split.json()["split"] == {"1": 30.0, "3": 70.0}
    shown = (await admin.get(f"{base}/support", headers=AUTH)).json()
    assert [v["version"] for v in shown["versions"]] == [1, 2, 3]
    assert shown["versions"][1]["model"] == "claude-opus-4-8"
    # Activating a version ends the split.
    assert (await admin.post(f"{base}/support/activate", json={"version": 3}, headers=AUTH)).json()[
        "split"
    ] is None
    ended = await admin.put(f"{base}/support/split", json={"weights": None}, headers=AUTH)
    assert ended.json()["split"] is None

    listed = (await admin.get(base, headers=AUTH)).json()["data"]
    assert [(p["name"], p["active_version"]) for p in listed] == [("support", 3)]
    usage = (await admin.get(f"{base}/support/usage", headers=AUTH)).json()
    assert [row["version"] for row in usage["data"]] == [1, 2, 3]
    assert usage["data"][0] == {
        "version": 1,
        "conversations": 0,
        "replies": 0,
        "failed": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cost_usd": "0",
    }


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("", {"name": "x"}, 400, "system: field required"),
        ("", {"name": "bad name!", "system": "s"}, 400, "prompt name"),
        ("", {"name": "x", "system": "s", "activate": "yes"}, 400, "activate"),
        ("/nope/rollback", {}, 404, "no prompt named 'nope'"),
        ("/support/activate", {"version": 9}, 400, "has no version 9"),
        ("/support/activate", {}, 400, "version: field required"),
        ("/support/rollback", {}, 400, "no earlier active version"),
        ("/support/split", {"weights": {"1": 0}}, 400, "positive number"),
        ("/support/split", {"weights": {"4": 1}}, 400, "version 4 does not exist"),
        ("/support/split", {"weights": {"one": 1}}, 400, "not a version number"),
        ("/support/split", {}, 400, "weights: field required"),
    ],
)
async def test_prompt_errors(
    admin: httpx2.AsyncClient, path: str, body: dict[str, object], status: int, fragment: str
) -> None:
    await admin.post(
        "/admin/organizations/acme/prompts", json={"name": "support", "system": "s"}, headers=AUTH
    )
    method = "PUT" if path.endswith("/split") else "POST"
    response = await admin.request(
        method, f"/admin/organizations/acme/prompts{path}", json=body, headers=AUTH
    )
    assert_error(response, status, "not_found_error" if status == 404 else "invalid_request_error", fragment)


async def test_budgets_of_organisations_and_users(
    admin: httpx2.AsyncClient, store: Store, resolver: KeyResolver
) -> None:
    org = await store.orgs.get_org("acme")
    assert org is not None
    user = await store.orgs.create_user(org.id, "alice")
    key = await store.keys.create_key(org_id=org.id, user_id=user.id)
    assert (await resolver.resolve(key.key)).settings.org_budget == BudgetCaps()

    shown = await admin.get("/admin/organizations/acme/budget", headers=AUTH)
    assert shown.status_code == 200
    assert shown.json()["daily_tokens"] is None
    changed = await admin.patch(
        "/admin/organizations/acme/budget",
        json={"daily_tokens": 10_000, "monthly_usd": "25.50"},
        headers=AUTH,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["daily_tokens"], changed.json()["monthly_usd"]) == (10_000, 25.5)
    # The change applies at once in this process: the key's identity carries the new caps.
    identity = await resolver.resolve(key.key)
    assert identity.settings.org_budget == BudgetCaps(daily_tokens=10_000, monthly_usd=25.5)

    await admin.patch("/admin/organizations/acme/users/alice/budget", json={"daily_usd": 1}, headers=AUTH)
    identity = await resolver.resolve(key.key)
    assert identity.settings.user_budget == BudgetCaps(daily_usd=1.0)
    cleared = await admin.patch("/admin/organizations/acme/budget", json={"daily_tokens": None}, headers=AUTH)
    assert cleared.json()["daily_tokens"] is None
    found = await store.keys.find_active_key(hash_key(key.key))
    assert found is not None
    assert found.identity.settings.org_budget == BudgetCaps(monthly_usd=25.5)

    # What was spent comes from the usage records.
    await store.usage.insert_usage(
        [
            UsageRecord(
                request_id="r1",
                model="claude-sonnet-4-6",
                status=200,
                org_id=org.id,
                user_id=user.id,
                usage=Usage(input_tokens=100, output_tokens=20, cache_read_input_tokens=1000),
                cost_usd=Decimal("0.0123"),
            )
        ]
    )
    spent = (await admin.get("/admin/organizations/acme/users/alice/budget", headers=AUTH)).json()["spent"]
    assert spent["today"]["tokens"] == 1120
    assert spent["today"]["usd"] == "0.0123"
    assert spent["this_month"]["tokens"] == 1120
    assert spent["today"]["resets_at"].endswith("T00:00:00Z")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"daily_tokens": 0}, "daily_tokens: must be a whole number"),
        ({"daily_tokens": 1.5}, "daily_tokens: must be a whole number"),
        ({"monthly_usd": -1}, "monthly_usd: must be a positive number"),
        ({"monthly_usd": "lots"}, "monthly_usd: must be a number"),
        ({"weekly_usd": 1}, "weekly_usd: not a budget"),
    ],
)
async def test_bad_budgets(admin: httpx2.AsyncClient, body: dict[str, object], fragment: str) -> None:
    response = await admin.patch("/admin/organizations/acme/budget", json=body, headers=AUTH)
    assert_error(response, 400, "invalid_request_error", fragment)
    missing = await admin.get("/admin/organizations/acme/users/nobody/budget", headers=AUTH)
    assert_error(missing, 404, "not_found_error", "no user named 'nobody'")


async def test_a_key_may_be_allowed_to_act_for_end_users(
    admin: httpx2.AsyncClient, resolver: KeyResolver
) -> None:
    created = await admin.post("/admin/keys", json={"org": "acme", "act_for_users": True}, headers=AUTH)
    assert created.status_code == 201
    key = created.json()
    assert key["act_for_users"] is True
    assert (await resolver.resolve(key["key"])).can_act_for_users
    changed = await admin.patch(f"/admin/keys/{key['id']}", json={"act_for_users": False}, headers=AUTH)
    assert changed.json()["act_for_users"] is False
    assert not (await resolver.resolve(key["key"])).can_act_for_users
    bad = await admin.patch(f"/admin/keys/{key['id']}", json={"act_for_users": "yes"}, headers=AUTH)
    assert_error(bad, 400, "invalid_request_error", "act_for_users: must be true or false")
