"""Screenshots of every console page for the README: a gateway (``claudegate serve``, its built-in simulator)
on a fresh SQLite file with two months of sample usage, photographed by the system's headless Chromium.

    .venv/bin/python scripts/console_screenshots.py [--out docs/console]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from claudegate.accounting.usage import UsageRecord
from claudegate.store import Store

TOKEN = "screenshot-admin-token"
MODELS = {"claude-sonnet-4-6": (3, 15), "claude-haiku-4-5": (1, 5), "claude-opus-4-6": (5, 25)}


async def sample_data(url: str) -> str:
    """Three organisations with users, keys, budgets, a prompt with two versions, and 60 days of calls.
    Returns a key of the first organisation (a member's sign-in)."""
    store = await Store.open(url)
    rng = random.Random(3)
    member_key = ""
    try:
        now = datetime.now(UTC)
        records = []
        for o, name in enumerate(["acme", "globex", "initech"]):
            org = await store.orgs.create_org(name)
            await store.budgets.update(
                org_id=org.id, user_id=None, changes={"daily_usd": 25 + 25 * o, "monthly_usd": 500}
            )
            users = [await store.orgs.create_user(org.id, u) for u in ("alice", "bob", "carol")[: 3 - o]]
            keys = [
                await store.keys.create_key(org_id=org.id, user_id=user.id, name=f"{user.name}-laptop")
                for user in users
            ] + [await store.keys.create_key(org_id=org.id, name="backend", requests_per_minute=600)]
            if o == 0:
                member_key = keys[0].key
                for system in (
                    "You are a concise support agent.",
                    "You are a friendly, thorough support agent.",
                ):
                    await store.prompts.create_version(org.id, "support", system=system, activate=True)
            for n in range(3000 // (o + 1)):
                key = rng.choice(keys)
                model = rng.choice(list(MODELS))
                price_in, price_out = MODELS[model]
                tokens_in, tokens_out = rng.randrange(200, 6000), rng.randrange(50, 1500)
                read = rng.randrange(0, 8000) if rng.random() < 0.5 else 0
                failed = rng.random() < 0.03
                records.append(
                    UsageRecord(
                        request_id=f"req_sample_{o}_{n}",
                        model=model,
                        status=529 if failed else 200,
                        error_type="overloaded_error" if failed else None,
                        created_at=now - timedelta(minutes=rng.randrange(60 * 24 * 60)),
                        org_id=org.id,
                        user_id=key.row.user_id,
                        key_id=key.row.id,
                        upstream="simulator",
                        input_tokens=0 if failed else tokens_in,
                        output_tokens=0 if failed else tokens_out,
                        cache_read_input_tokens=0 if failed else read,
                        cost_usd=Decimal(0)
                        if failed
                        else Decimal(tokens_in * price_in + tokens_out * price_out + read * price_in / 10)
                        / Decimal(1_000_000),
                    )
                )
        await store.usage.insert_usage(records)
    finally:
        await store.close()
    return member_key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/console"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/console.db"
        member_key = asyncio.run(sample_data(url))
        port = free_port()
        env = {**os.environ, "CLAUDEGATE_DATABASE_URL": url, "CLAUDEGATE_ADMIN_TOKEN": TOKEN}
        env.pop("ANTHROPIC_API_KEY", None)
        server = subprocess.Popen(
            [sys.executable, "-m", "claudegate", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}/console"
            for _ in range(100):
                try:
                    urllib.request.urlopen(base, timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            shoot(base, member_key, args.out)
        finally:
            server.terminate()
            server.wait(10)


def shoot(base: str, member_key: str, out: Path) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(driver, 20)
    try:
        driver.get(base)
        wait.until(lambda d: d.find_element(By.ID, "token").is_displayed())
        driver.save_screenshot(str(out / "sign-in.png"))
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
        wait.until(lambda d: d.find_element(By.ID, "view").get_attribute("data-ready") == "usage")

        def page(name: str, height: int = 1000) -> None:
            driver.execute_script("document.getElementById('view').dataset.ready = ''")
            driver.get(f"{base}#{name}")
            driver.execute_script("window.dispatchEvent(new HashChangeEvent('hashchange'))")
            wait.until(lambda d: d.find_element(By.ID, "view").get_attribute("data-ready") == name)
            driver.set_window_size(1400, height)

        page("usage", 1500)
        driver.save_screenshot(str(out / "usage.png"))
        page("live")
        driver.save_screenshot(str(out / "live.png"))
        page("keys", 1100)
        form = driver.find_element(By.ID, "key-create")
        form.find_element(By.NAME, "org").send_keys("acme")
        form.find_element(By.NAME, "user").send_keys("dave")
        form.find_element(By.NAME, "requests_per_minute").send_keys("60")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: d.find_element(By.ID, "new-key"))
        driver.save_screenshot(str(out / "keys.png"))
        page("budgets")
        driver.save_screenshot(str(out / "budgets.png"))
        page("prompts")
        driver.save_screenshot(str(out / "prompts.png"))
        page("playground")
        Select(driver.find_element(By.ID, "chat-prompt")).select_by_value("support")
        wait.until(lambda d: len(Select(d.find_element(By.ID, "chat-version")).options) == 3)
        for text in ("How do I rotate a gateway key?", "And what happens to calls in flight?"):
            done = len(driver.find_elements(By.CSS_SELECTOR, "[data-reply-meta]"))
            driver.find_element(By.ID, "chat-input").send_keys(text)
            driver.find_element(By.CSS_SELECTOR, "#chat-form button").click()
            wait.until(lambda d, n=done: len(d.find_elements(By.CSS_SELECTOR, "[data-reply-meta]")) > n)
        driver.save_screenshot(str(out / "playground.png"))
        # A member of acme: their organisation's usage only, no live page.
        driver.find_element(By.ID, "sign-out").click()
        wait.until(lambda d: d.find_element(By.ID, "token").is_displayed())
        driver.find_element(By.ID, "token").send_keys(member_key)
        driver.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
        wait.until(lambda d: d.find_element(By.ID, "bar").is_displayed())
        page("usage", 1500)
        driver.save_screenshot(str(out / "usage-member.png"))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
