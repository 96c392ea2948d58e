"""How long each web console page takes the server with a year of usage records (target: under 300 ms).

Loads ``--records`` (default 1,000,000) usage records spread over the last 365 days, for 20 organisations,
200 users, 400 keys and 6 models, into a fresh SQLite file and a fresh PostgreSQL database (bulk: one
``executemany`` on SQLite, ``COPY`` on PostgreSQL) at revision 0010, lets revision 0011 add them up into
daily totals as it would for an existing gateway (timed too), then times the admin API calls each console
page makes, in-process through the admin API's ASGI app, so the figure is the server's time without a
network or a browser. Each page is timed ``--repeat`` times; the table shows the median and the slowest.

The baseline, measured in the same run on the same database, is ``SELECT count(*) FROM usage_records``: one
pass over the table's smallest index. Ratios below 1 mean the page reads less than the whole table.

    .venv/bin/python benchmarks/console_pages.py [--records 1000000] [--repeat 5] [--postgres URL] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import orjson
from pydantic import SecretStr
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.routing import Mount

from claudegate.keys import KeyResolver
from claudegate.server.admin import AdminDeps, admin_routes
from claudegate.server.admin_usage import LiveUpstream
from claudegate.store import Store, upgrade_database

TOKEN = "bench-admin-token"
MODELS = [
    ("claude-sonnet-4-6", 3.0, 15.0),
    ("claude-opus-4-6", 5.0, 25.0),
    ("claude-haiku-4-5", 1.0, 5.0),
    ("claude-sonnet-4-5-20250929", 3.0, 15.0),
    ("claude-opus-4-1-20250805", 15.0, 75.0),
    ("claude-sonnet-5", 3.0, 15.0),
]
ORGS, USERS_PER_ORG, KEYS_PER_ORG = 20, 10, 20
COLUMNS = (
    "created_at",
    "request_id",
    "org_id",
    "user_id",
    "key_id",
    "model",
    "upstream",
    "status",
    "error_type",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cache_creation_1h_input_tokens",
    "cost_usd",
    "latency_ms",
    "streamed",
    "attempts",
    "batch",
)


def make_rows(count: int, now: datetime, seed: int = 7) -> list[tuple[Any, ...]]:
    """``count`` records, evenly spread over the year before ``now``, in time order."""
    rng = random.Random(seed)
    year = 365 * 86400
    rows = []
    for n in range(count):
        org = rng.randrange(ORGS)
        user = rng.randrange(USERS_PER_ORG) if rng.random() < 0.7 else None
        model, price_in, price_out = MODELS[rng.randrange(len(MODELS))]
        failed = rng.random() < 0.02
        tokens_in = 0 if failed else rng.randrange(50, 20_000)
        tokens_out = 0 if failed else rng.randrange(1, 2_000)
        write = rng.randrange(0, 4_000) if rng.random() < 0.2 else 0
        read = rng.randrange(0, 20_000) if rng.random() < 0.4 else 0
        cost = (
            tokens_in * price_in + tokens_out * price_out + write * price_in * 1.25 + read * price_in * 0.1
        ) / 1e6
        rows.append(
            (
                now - timedelta(seconds=year * (count - n) / count),
                f"req_{n:012d}",
                org + 1,
                None if user is None else org * USERS_PER_ORG + user + 1,
                org * KEYS_PER_ORG + rng.randrange(KEYS_PER_ORG) + 1,
                model,
                "primary" if rng.random() < 0.9 else "secondary",
                529 if failed else 200,
                "overloaded_error" if failed else None,
                tokens_in,
                tokens_out,
                write,
                read,
                0,
                round(cost, 10),
                rng.uniform(200, 9_000),
                rng.random() < 0.6,
                1,
                False,
            )
        )
    return rows


async def prepare(url: str) -> None:
    """The schema before daily totals (revision 0010), and the organisations, users and keys."""
    await upgrade_database(url, "0010")
    store = await Store.open(url, upgrade=False)
    try:
        await make_tenants(store)
    finally:
        await store.close()


async def add_daily_totals(url: str, database: str) -> None:
    """Revision 0011 adds up the records loaded at 0010, as it does for a gateway's existing records."""
    started = time.perf_counter()
    await upgrade_database(url)
    print(f"{database}: daily totals of the records (revision 0011) in {time.perf_counter() - started:.1f} s")


async def make_tenants(store: Store) -> None:
    for o in range(ORGS):
        org = await store.orgs.create_org(f"org-{o + 1:02d}")
        users = [await store.orgs.create_user(org.id, f"user-{u + 1:02d}") for u in range(USERS_PER_ORG)]
        for k in range(KEYS_PER_ORG):
            await store.keys.create_key(
                org_id=org.id, user_id=users[k % USERS_PER_ORG].id, name=f"key-{k + 1:02d}"
            )


def load_sqlite(path: Path, rows: list[tuple[Any, ...]]) -> None:
    """SQLite stores UTCDateTime as naive UTC text; written here in SQLAlchemy's own format."""
    connection = sqlite3.connect(path)
    try:
        values = [(row[0].strftime("%Y-%m-%d %H:%M:%S.%f"), *row[1:]) for row in rows]
        placeholders = ", ".join("?" for _ in COLUMNS)
        with connection:
            connection.executemany(
                f"INSERT INTO usage_records ({', '.join(COLUMNS)}) VALUES ({placeholders})", values
            )
        connection.execute("ANALYZE")
    finally:
        connection.close()


async def load_postgres(url: str, rows: list[tuple[Any, ...]]) -> None:
    from decimal import Decimal

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        records = [(*row[:14], Decimal(str(row[14])), *row[15:]) for row in rows]
        await connection.copy_records_to_table("usage_records", records=records, columns=list(COLUMNS))
        await connection.execute("ANALYZE usage_records")
    finally:
        await connection.close()


def admin_client(store: Store) -> httpx2.AsyncClient:
    deps = AdminDeps(
        store=store,
        resolver=KeyResolver(store.keys, ttl_s=60),
        admin_token=SecretStr(TOKEN),
        live=lambda: [LiveUpstream("primary", 0, 0, "closed"), LiveUpstream("secondary", 0, 0, "closed")],
    )
    app = Starlette(routes=[Mount("/admin", routes=admin_routes(deps))])
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app),
        base_url="http://gateway.test",
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=600,
    )


def pages(now: datetime) -> dict[str, list[str]]:
    """Each page and the admin API calls it makes (as console.js makes them: charts ask for the 12 costliest
    groups; the CSV export for every group)."""
    month_ago = (now - timedelta(days=30)).strftime("%Y-%m-%d")
    year_ago = (now - timedelta(days=365)).strftime("%Y-%m-%d")
    week_ago = (now - timedelta(days=7)).strftime("%Y-%m-%d")
    org = "org-07"
    budget = [f"/organizations/{org}/budget", f"/organizations/{org}/users"] + [
        f"/organizations/{org}/users/user-{u + 1:02d}/budget" for u in range(USERS_PER_ORG)
    ]
    return {
        "usage: 30 days per day by model (the default)": [
            f"/usage/series?since={month_ago}&bucket=day&by=model&top=12"
        ],
        "usage: a year per month by organisation": [
            f"/usage/series?since={year_ago}&bucket=month&by=org&top=12"
        ],
        "usage: a year per day by key, one organisation": [
            f"/usage/series?since={year_ago}&bucket=day&by=key&org={org}&top=12"
        ],
        "usage: a week per hour by user": [f"/usage/series?since={week_ago}&bucket=hour&by=user&top=12"],
        "usage: a week per hour by user, every user (CSV)": [
            f"/usage/series?since={week_ago}&bucket=hour&by=user&format=csv"
        ],
        "usage: a year per month, one model, CSV": [
            f"/usage/series?since={year_ago}&bucket=month&by=total&model=claude-opus-4-6&format=csv"
        ],
        "live": ["/live"],
        "keys (all 400)": ["/keys"],
        "budgets (an organisation and its 10 users)": budget,
        "prompts": [f"/organizations/{org}/prompts"],
    }


async def timed(action: Callable[[], Awaitable[object]], repeat: int) -> list[float]:
    await action()  # warm: the first call also fills the database's cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await action()
        times.append((time.perf_counter() - start) * 1000)
    return times


async def measure(url: str, repeat: int, now: datetime) -> dict[str, Any]:
    store = await Store.open(url, upgrade=False)
    try:
        async with store.engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM usage_records"))).scalar_one()

        async def baseline() -> None:
            async with store.engine.connect() as conn:
                await conn.execute(text("SELECT count(*) FROM usage_records"))

        results: dict[str, Any] = {
            "records": count,
            "baseline_ms": statistics.median(await timed(baseline, repeat)),
        }
        async with admin_client(store) as client:
            for name, paths in pages(now).items():

                async def load(paths: list[str] = paths) -> None:
                    for path in paths:
                        response = await client.get("/admin" + path)
                        if response.status_code != 200:
                            raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")

                times = await timed(load, repeat)
                results[name] = {"median_ms": statistics.median(times), "max_ms": max(times)}
        return results
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    now = datetime.now(UTC)
    started = time.perf_counter()
    rows = make_rows(args.records, now)
    print(f"made {len(rows):,} records in {time.perf_counter() - started:.1f} s")
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/console.db"
        await prepare(url)
        started = time.perf_counter()
        load_sqlite(Path(tmp) / "console.db", rows)
        print(f"SQLite: loaded in {time.perf_counter() - started:.1f} s")
        await add_daily_totals(url, "SQLite")
        report["sqlite"] = await measure(url, args.repeat, now)
    if not args.no_postgres:
        report["postgresql"] = await on_postgres(args.postgres, rows, args.repeat, now)
    print_report(report)
    if args.json:
        args.json.write_text(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


async def on_postgres(
    server_url: str, rows: list[tuple[Any, ...]], repeat: int, now: datetime
) -> dict[str, Any]:
    """The same on a PostgreSQL database made for this run and dropped after it."""
    name = f"bench_console_{uuid.uuid4().hex[:8]}"
    plain = server_url.replace("postgresql+asyncpg://", "postgresql://")
    admin = await asyncpg.connect(plain)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = server_url.rsplit("/", 1)[0] + "/" + name
    try:
        await prepare(url)
        started = time.perf_counter()
        await load_postgres(url, rows)
        print(f"PostgreSQL: loaded in {time.perf_counter() - started:.1f} s")
        await add_daily_totals(url, "PostgreSQL")
        return await measure(url, repeat, now)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def print_report(report: dict[str, Any]) -> None:
    for database, results in report.items():
        baseline = results["baseline_ms"]
        print(f"\n{database}: {results['records']:,} records; baseline (count(*)) {baseline:.1f} ms")
        print("| page | median ms | slowest ms | vs baseline |\n|---|---:|---:|---:|")
        for name, figures in results.items():
            if isinstance(figures, dict):
                ratio = figures["median_ms"] / baseline
                print(f"| {name} | {figures['median_ms']:.1f} | {figures['max_ms']:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
