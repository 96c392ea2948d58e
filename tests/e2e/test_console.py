"""The web console in a real headless Chromium, against a gateway in front of the simulator: an operator and
a member of an organisation sign in, keys are made and revoked, a budget set, the usage page read against the
records, and a reply streamed into the playground. A member never sees another organisation's data, and a
change without the session's CSRF token fails."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anthropic
import httpx2
import pytest
from pydantic import SecretStr
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from claudegate.accounting.usage import UsageRecord
from claudegate.store._engine import create_engine
from claudegate.store.migrate import upgrade_database
from claudegate.store.usage import UsageRepository
from claudegate.wire.usage_tap import Usage
from tests.e2e.conftest import GatewayServer, Tenant, gateway_settings, make_tenant
from tests.e2e.console_support import Console, chromium
from tests.servers import running_in_thread

ADMIN_TOKEN = "console-admin-token-for-tests"
MARCH = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class ConsoleStack:
    url: str
    database_url: str
    acme: Tenant
    globex: Tenant
    records: list[UsageRecord]


def _march_records(acme: Tenant, globex: Tenant) -> list[UsageRecord]:
    """Calls of both organisations spread over March, at prices with fractions of a cent."""
    records = []
    for day in range(1, 29):
        for n, (tenant, model) in enumerate(
            [(acme, "claude-sonnet-4-6"), (acme, "claude-haiku-4-5"), (globex, "claude-opus-4-6")]
        ):
            records.append(
                UsageRecord(
                    request_id=f"req_console_{day}_{n}",
                    model=model,
                    status=200 if day % 9 else 529,
                    error_type=None if day % 9 else "overloaded_error",
                    created_at=datetime(2026, 3, day, 7 + n, 30, tzinfo=UTC),
                    org_id=tenant.org_id,
                    user_id=tenant.user_id if n == 1 else None,
                    key_id=tenant.user_key_id if n == 1 else tenant.key_id,
                    upstream="simulator",
                    usage=Usage(
                        input_tokens=1000 * day + n,
                        output_tokens=300 * day,
                        cache_creation_input_tokens=50 * n,
                        cache_read_input_tokens=700 * (day % 3),
                    ),
                    cost_usd=Decimal("0.0123457") * day + Decimal(n) / 1000,
                )
            )
    return records


@pytest.fixture(scope="module")
async def console_stack(
    slow_simulator_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ConsoleStack]:
    tmp = tmp_path_factory.mktemp("console")
    url = f"sqlite+aiosqlite:///{tmp / 'claudegate.db'}"
    await upgrade_database(url)
    acme = await make_tenant(url, "acme")
    globex = await make_tenant(url, "globex")
    records = _march_records(acme, globex)
    engine = create_engine(url)
    try:
        await UsageRepository(engine).insert_usage(records)
    finally:
        await engine.dispose()
    settings = gateway_settings(slow_simulator_url, url, tmp).model_copy(
        update={"admin_token": SecretStr(ADMIN_TOKEN)}
    )
    with running_in_thread(lambda: GatewayServer(settings)) as server:
        assert isinstance(server, GatewayServer)
        yield ConsoleStack(server.url, url, acme, globex, records)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


@pytest.fixture
def console(browser: WebDriver, console_stack: ConsoleStack) -> Console:
    return Console(browser, console_stack.url)


def _admin(stack: ConsoleStack, method: str, path: str) -> httpx2.Response:
    return httpx2.request(
        method, stack.url + "/admin" + path, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    )


def _key(stack: ConsoleStack, key_id: int) -> dict[str, Any]:
    return next(k for k in _admin(stack, "GET", "/keys?org=acme").json()["data"] if k["id"] == key_id)


def _show_march(console: Console, org: str = "", by: str = "model") -> None:
    """Filter the usage page to March, per day, split ``by``, for one organisation or all."""
    console.driver.execute_script(
        """const form = document.getElementById('usage-filters');
           form.elements.since.value = '2026-03-01'; form.elements.until.value = '2026-04-01';
           form.elements.bucket.value = 'day'; form.elements.by.value = arguments[1];
           if (form.elements.org) form.elements.org.value = arguments[0];
           document.getElementById('usage-report').replaceChildren();
           form.requestSubmit();""",
        org,
        by,
    )
    console.find("#usage-table")


def _page_totals(console: Console) -> dict[str, str]:
    tiles = console.driver.find_elements(By.CSS_SELECTOR, "[data-total]")
    return {tile.get_attribute("data-total") or "": tile.text for tile in tiles} | {
        "cost_exact": console.find("[data-total=cost_usd]").get_attribute("title") or ""
    }


def _expected(records: list[UsageRecord]) -> dict[str, str]:
    cost = sum((r.cost_usd or Decimal(0) for r in records), Decimal(0))
    return {
        "requests": f"{len(records):,}",
        "errors": f"{sum(1 for r in records if r.status >= 400):,}",
        "input_tokens": f"{sum(r.usage.input_tokens for r in records):,}",
        "output_tokens": f"{sum(r.usage.output_tokens for r in records):,}",
        "cache_creation_input_tokens": f"{sum(r.usage.cache_creation_input_tokens for r in records):,}",
        "cache_read_input_tokens": f"{sum(r.usage.cache_read_input_tokens for r in records):,}",
        "cost_usd": f"${cost.quantize(Decimal('0.01')):,}",
        "cost_exact": format(cost.normalize(), "f"),
    }


def test_operator_reads_usage_equal_to_the_records(console: Console, console_stack: ConsoleStack) -> None:
    console.sign_in(ADMIN_TOKEN)
    console.open("usage")
    _show_march(console)
    assert _page_totals(console) == _expected(console_stack.records)
    # The table behind the charts: one row per day and model, each costing what its records cost.
    rows = console.driver.find_elements(By.CSS_SELECTOR, "#usage-table tbody tr")
    assert len(rows) == 28 * 3
    shown = {
        (row.find_elements(By.TAG_NAME, "td")[0].text, row.find_elements(By.TAG_NAME, "td")[1].text): Decimal(
            row.find_element(By.CSS_SELECTOR, "[data-cost]").text
        )
        for row in rows
    }
    for record in console_stack.records:
        assert shown[(record.created_at.strftime("%Y-%m-%d"), record.model)] == record.cost_usd
    assert len(console.driver.find_elements(By.CSS_SELECTOR, "svg.chart rect")) > 28


def test_usage_csv_export_has_the_same_rows(console: Console, console_stack: ConsoleStack) -> None:
    console.sign_in(ADMIN_TOKEN)
    console.open("usage")
    _show_march(console, org="acme", by="user")
    href = console.find("#csv").get_attribute("href") or ""
    csv_text = console.driver.execute_async_script(
        "const done = arguments[1]; fetch(arguments[0]).then(r => r.text()).then(done);", href
    )
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("period,group,label,requests")
    acme = [r for r in console_stack.records if r.org_id == console_stack.acme.org_id]
    assert len(lines) - 1 == 28 * 2  # each day: alice's calls and the org key's calls (no user)
    assert sum(Decimal(line.split(",")[9]) for line in lines[1:]) == sum(r.cost_usd or 0 for r in acme)


def test_member_sees_only_their_organisation(console: Console, console_stack: ConsoleStack) -> None:
    acme, globex = console_stack.acme, console_stack.globex
    console.sign_in(acme.user_key)
    assert "acme" in console.find("#who").text
    assert not console.find("#nav a[data-page=live]").is_displayed()
    console.open("usage")
    _show_march(console)
    mine = [r for r in console_stack.records if r.org_id == acme.org_id]
    assert _page_totals(console) == _expected(mine)
    assert "claude-opus-4-6" not in console.find("#usage-table").text  # globex's model
    keys = console.open("keys").find_element(By.ID, "keys-list").text
    assert "acme" in keys
    assert "globex" not in keys
    # Asking for the other organisation by hand is refused, whatever the page would send.
    for path in (
        "/console/api/admin/usage/series?org=globex",
        "/console/api/admin/keys?org=globex",
        "/console/api/admin/organizations/globex/budget",
        f"/console/api/admin/organizations/{globex.org_name}/prompts",
        "/console/api/admin/organizations",
        "/console/api/admin/live",
    ):
        answer = console.fetch("GET", path)
        assert answer["status"] == 403, path
    assert console.fetch("GET", "/console/api/admin/organizations/acme/budget")["status"] == 200
    # A member reads but does not change settings.
    answer = console.fetch("PATCH", "/console/api/admin/organizations/acme/budget", {"daily_usd": 1})
    assert answer["status"] == 403


def test_operator_creates_and_revokes_a_key(console: Console, console_stack: ConsoleStack) -> None:
    console.sign_in(ADMIN_TOKEN)
    view = console.open("keys")
    form = view.find_element(By.ID, "key-create")
    form.find_element(By.NAME, "org").send_keys("acme")
    form.find_element(By.NAME, "user").send_keys("bob")
    name = form.find_element(By.NAME, "name")
    name.clear()
    name.send_keys("console-made")
    form.find_element(By.NAME, "requests_per_minute").send_keys("120")
    form.find_element(By.NAME, "priority").send_keys("3")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    key = console.find("#new-key").text
    key_id = int(console.find("#key-made b").text.split()[1])
    client = anthropic.Anthropic(base_url=console_stack.url, api_key=key, max_retries=0)
    reply = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.content
    stored = next(
        k for k in _admin(console_stack, "GET", "/keys?org=acme").json()["data"] if k["id"] == key_id
    )
    assert (stored["user"], stored["requests_per_minute"], stored["priority"]) == ("bob", 120, 3)
    # The key is shown once: the list shows its prefix only.
    console.open("keys")
    assert key not in console.find("#keys-list").text
    # Change a limit, then revoke.
    row = console.find(f"tr[data-key='{key_id}']")
    concurrency = row.find_element(By.NAME, "max_concurrency")
    concurrency.send_keys("2")
    row.find_element(By.CSS_SELECTOR, "form[data-limits] button").click()
    console.wait(lambda d: "saved" in row.text)
    console.click(f"button[data-revoke='{key_id}']")
    console.wait(lambda d: d.switch_to.alert).accept()
    console.wait(lambda d: "revoked" in d.find_element(By.CSS_SELECTOR, f"tr[data-key='{key_id}']").text)
    stored = next(
        k for k in _admin(console_stack, "GET", "/keys?org=acme").json()["data"] if k["id"] == key_id
    )
    assert stored["max_concurrency"] == 2
    assert stored["active"] is False
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(
            model="claude-sonnet-4-6", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )


def test_operator_sets_a_budget(console: Console, console_stack: ConsoleStack) -> None:
    console.sign_in(ADMIN_TOKEN)
    console.open("budgets")
    Select(console.find("#org")).select_by_visible_text("globex")
    console.wait(lambda d: "globex" in d.find_element(By.ID, "budgets").text)
    form = console.find("form[data-budget=org]")
    form.find_element(By.NAME, "daily_usd").send_keys("12.5")
    form.find_element(By.NAME, "monthly_tokens").send_keys("5000000")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    console.wait(lambda d: "$12.50" in d.find_element(By.CSS_SELECTOR, "tr[data-spent=org-today]").text)
    budget = _admin(console_stack, "GET", "/organizations/globex/budget").json()
    assert (budget["daily_usd"], budget["monthly_tokens"]) == (12.5, 5_000_000)
    # Each user of the organisation has a card of their own, with what they spent.
    assert console.find("tr[data-spent=user-alice-month]").text.startswith("this month")


def test_a_change_without_the_csrf_token_fails(console: Console, console_stack: ConsoleStack) -> None:
    console.sign_in(ADMIN_TOKEN)
    console.open("keys")
    before = len(_admin(console_stack, "GET", "/keys").json()["data"])
    answer = console.fetch("POST", "/console/api/admin/keys", {"org": "acme", "name": "forged"}, csrf=False)
    assert answer["status"] == 403
    assert "CSRF" in answer["body"]["error"]["message"]
    forged = console.driver.execute_async_script(
        """const done = arguments[0];
           fetch('/console/api/admin/keys', {method: 'POST', headers: {'content-type': 'application/json',
             'x-csrf-token': 'not-the-token'}, body: '{"org": "acme"}'}).then(r => done(r.status));"""
    )
    assert forged == 403
    assert len(_admin(console_stack, "GET", "/keys").json()["data"]) == before
    # The same change with the token goes through.
    answer = console.fetch("POST", "/console/api/admin/keys", {"org": "acme", "name": "genuine"})
    assert answer["status"] == 201


def test_signing_out_ends_the_session(console: Console) -> None:
    console.sign_in(ADMIN_TOKEN)
    console.find("#sign-out").click()
    console.wait(lambda d: d.find_element(By.ID, "sign-in").is_displayed())
    assert console.fetch("GET", "/console/api/admin/keys")["status"] == 401


def test_playground_streams_a_reply_and_shows_its_tokens_and_cost(
    console: Console, console_stack: ConsoleStack
) -> None:
    console.sign_in(console_stack.acme.user_key)
    console.open("playground")
    # Count the reply's renders (one mutation record per token) and how many network reads delivered them.
    console.driver.execute_script(
        """window.renders = 0; window.batches = 0;
           new MutationObserver((records) => {
             const tokens = records.filter(r => r.target.classList && r.target.classList.contains('text'));
             if (tokens.length) { window.batches += 1; window.renders += tokens.length; }
           }).observe(document.getElementById('messages'), {subtree: true, childList: true});"""
    )
    console.find("#chat-input").send_keys("Tell me about lighthouses")
    console.find("#chat-form button").click()
    meta = console.find("[data-reply-meta]")
    reply = console.find(".msg.assistant.done .text").text
    assert reply
    renders, batches = console.driver.execute_script("return [window.renders, window.batches]")
    assert renders > 1
    assert batches > 1
    message_id = meta.get_attribute("data-reply-meta")
    chat_id = console.find("#chats a.active").get_attribute("data-chat")
    headers = {"x-api-key": console_stack.acme.user_key}
    stored = httpx2.get(f"{console_stack.url}/chats/{chat_id}", headers=headers).json()
    message = next(m for m in stored["messages"] if m["id"] == message_id)
    assert message["content"][0]["text"] == reply
    assert f"{message['usage']['output_tokens']} out" in meta.text
    assert f"${message['cost_usd']}" in meta.text
    # The conversation is kept: reopening the page lists it and shows both turns.
    console.open("playground")
    console.find(f"#chats a[data-chat='{chat_id}']").click()
    console.wait(lambda d: reply in d.find_element(By.ID, "messages").text)


def test_playground_pins_a_prompt_version(console: Console, console_stack: ConsoleStack) -> None:
    for system in ("You are terse.", "You are verbose."):
        httpx2.post(
            f"{console_stack.url}/admin/organizations/globex/prompts",
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
            json={"name": "helper", "system": system, "activate": True},
        ).raise_for_status()
    console.sign_in(ADMIN_TOKEN)
    console.open("playground")
    Select(console.find("#org")).select_by_visible_text("globex")
    console.wait(lambda d: len(Select(d.find_element(By.ID, "chat-prompt")).options) > 1)
    Select(console.find("#chat-prompt")).select_by_value("helper")
    console.wait(lambda d: len(Select(d.find_element(By.ID, "chat-version")).options) == 3)
    Select(console.find("#chat-version")).select_by_value("1")
    console.find("#chat-input").send_keys("Hello")
    console.find("#chat-form button").click()
    console.find("[data-reply-meta]")
    chat_id = console.find("#chats a.active").get_attribute("data-chat")
    stored = httpx2.get(
        f"{console_stack.url}/chats/{chat_id}", headers={"x-api-key": console_stack.globex.key}
    ).json()
    assert stored["prompt"] == {"name": "helper", "version": 1}  # not the active version 2


def test_operator_splits_and_rolls_back_a_prompt(console: Console, console_stack: ConsoleStack) -> None:
    url = f"{console_stack.url}/admin/organizations/acme/prompts"
    for system in ("Answer in French.", "Answer in German."):
        httpx2.post(
            url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, json={"name": "lang", "system": system}
        )
    console.sign_in(ADMIN_TOKEN)
    console.open("prompts")
    Select(console.find("#org")).select_by_visible_text("acme")
    card = console.find("[data-prompt=lang]")
    assert "Answer in German." in card.text
    card.find_element(By.NAME, "v1").send_keys("70")
    card.find_element(By.NAME, "v2").send_keys("30")
    card.find_element(By.XPATH, ".//button[text()='Set A/B split']").click()
    console.wait(lambda d: "End split" in d.find_element(By.CSS_SELECTOR, "[data-prompt=lang]").text)
    prompt = _admin(console_stack, "GET", "/organizations/acme/prompts/lang").json()
    assert prompt["split"] == {"1": 70, "2": 30}
    console.click("[data-prompt=lang]", ".//button[text()='Activate']")
    console.wait(lambda d: "Roll back" in d.find_element(By.CSS_SELECTOR, "[data-prompt=lang]").text)
    assert _admin(console_stack, "GET", "/organizations/acme/prompts/lang").json()["active_version"] == 2
    console.click("[data-prompt=lang]", ".//button[starts-with(text(), 'Roll back')]")
    console.wait(lambda d: "active: v1" in d.find_element(By.CSS_SELECTOR, "[data-prompt=lang]").text)
    assert _admin(console_stack, "GET", "/organizations/acme/prompts/lang").json()["active_version"] == 1


def test_the_console_answers_before_any_other_route(console_stack: ConsoleStack) -> None:
    page = httpx2.get(console_stack.url + "/console")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert httpx2.get(console_stack.url + "/console/static/console.js").status_code == 200
    assert httpx2.get(console_stack.url + "/console/api/me").status_code == 401


def test_the_session_cookie_is_signed_http_only_and_same_site(console_stack: ConsoleStack) -> None:
    wrong = httpx2.post(console_stack.url + "/console/sign-in", json={"token": "cg-not-a-real-key"})
    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers
    form = httpx2.post(console_stack.url + "/console/sign-in", data={"token": ADMIN_TOKEN})
    assert form.status_code == 400  # a cross-site form cannot sign anyone in
    signed = httpx2.post(console_stack.url + "/console/sign-in", json={"token": ADMIN_TOKEN})
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert ADMIN_TOKEN not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    forged = value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB")
    me = httpx2.get(console_stack.url + "/console/api/me", cookies={"claudegate_console": forged})
    assert me.status_code == 401


def test_revoking_a_members_key_ends_their_session(console: Console, console_stack: ConsoleStack) -> None:
    made = httpx2.post(
        f"{console_stack.url}/admin/keys",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"org": "acme", "name": "short-lived"},
    ).json()
    console.sign_in(made["key"])
    assert console.fetch("GET", "/console/api/admin/keys")["status"] == 200
    _admin(console_stack, "POST", f"/keys/{made['id']}/revoke")
    assert console.fetch("GET", "/console/api/admin/keys")["status"] == 401
