"""The admin API's usage reports (``/admin/usage/series``) and live state (``/admin/live``), in-process over
the real store, on SQLite and PostgreSQL: every figure is the sum of the records it covers."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx2
import pytest
from pydantic import SecretStr
from sqlalchemy import insert
from starlette.applications import Starlette
from starlette.routing import Mount

from claudegate.accounting.usage import UsageRecord
from claudegate.keys import KeyResolver
from claudegate.server.admin import AdminDeps, admin_routes
from claudegate.server.admin_usage import LiveUpstream
from claudegate.store import Store, upgrade_database
from claudegate.store._engine import create_engine
from claudegate.store.tables import UsageRow
from claudegate.store.usage_series import Bucket, SeriesBy, UsageQuery, rollup_dimension
from claudegate.wire.usage_tap import Usage

TOKEN = "admin-token-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def admin(store: Store) -> AsyncIterator[httpx2.AsyncClient]:
    deps = AdminDeps(
        store=store,
        resolver=KeyResolver(store.keys, ttl_s=60),
        admin_token=SecretStr(TOKEN),
        live=lambda: [LiveUpstream(name="primary", in_flight=3, waiting=2, breaker="open")],
    )
    app = Starlette(routes=[Mount("/admin", routes=admin_routes(deps))])
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(
        transport=transport, base_url="http://gateway.test", headers=AUTH
    ) as client:
        yield client


@pytest.fixture
async def records(store: Store) -> list[UsageRecord]:
    """Two organisations' calls over two months, some of them failed, one unpriced."""
    acme = await store.orgs.create_org("acme")
    globex = await store.orgs.create_org("globex")
    alice = await store.orgs.create_user(acme.id, "alice")
    key = await store.keys.create_key(org_id=acme.id, user_id=alice.id, name="laptop")
    made = []
    for n in range(60):
        org = acme if n % 3 else globex
        made.append(
            UsageRecord(
                request_id=f"req_{n}",
                model=("claude-sonnet-4-6", "claude-haiku-4-5")[n % 2],
                status=529 if n % 11 == 0 else 200,
                error_type="overloaded_error" if n % 11 == 0 else None,
                created_at=datetime(2026, 4 + n // 30, 1 + n % 28, n % 24, 15, tzinfo=UTC),
                org_id=org.id,
                user_id=alice.id if org is acme and n % 2 else None,
                key_id=key.row.id if org is acme and n % 2 else None,
                upstream="primary",
                usage=Usage(
                    input_tokens=100 + n,
                    output_tokens=10 * n,
                    cache_creation_input_tokens=n % 5,
                    cache_read_input_tokens=n % 7,
                ),
                cost_usd=None if n == 59 else Decimal("0.0012345") * (n + 1),
            )
        )
    # Two batches on the same days: the second adds to the daily totals the first made.
    await store.usage.insert_usage(made[::2])
    await store.usage.insert_usage(made[1::2])
    return made


def _cost(records: list[UsageRecord]) -> Decimal:
    return sum((r.cost_usd or Decimal(0) for r in records), Decimal(0))


async def test_totals_per_month_equal_the_records(
    admin: httpx2.AsyncClient, records: list[UsageRecord]
) -> None:
    report = (await admin.get("/admin/usage/series", params={"bucket": "month"})).json()
    assert [row["period"] for row in report["data"]] == ["2026-04", "2026-05"]
    for row in report["data"]:
        month = [r for r in records if r.created_at.strftime("%Y-%m") == row["period"]]
        assert row["requests"] == len(month)
        assert row["errors"] == sum(1 for r in month if r.status >= 400)
        assert row["input_tokens"] == sum(r.usage.input_tokens for r in month)
        assert row["cache_read_input_tokens"] == sum(r.usage.cache_read_input_tokens for r in month)
        assert Decimal(row["cost_usd"]) == _cost(month)
    assert report["totals"]["unpriced_requests"] == 1
    assert Decimal(report["totals"]["cost_usd"]) == _cost(records)


@pytest.mark.parametrize("bucket", ["day", "month", "none"])
@pytest.mark.parametrize("by", ["total", "org", "user", "key", "model"])
@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"model": "claude-haiku-4-5"},
        {"key": "1"},
        {"org": "acme", "since": "2026-04-10", "until": "2026-05-03"},
    ],
)
async def test_every_split_and_filter_adds_up_the_records(
    admin: httpx2.AsyncClient, records: list[UsageRecord], bucket: str, by: str, filters: dict[str, str]
) -> None:
    """Whether the report reads the daily totals or the records, its rows are the records' sums."""
    report = (await admin.get("/admin/usage/series", params={"bucket": bucket, "by": by, **filters})).json()
    since = datetime.fromisoformat(filters.get("since", "2000-01-01")).replace(tzinfo=UTC)
    until = datetime.fromisoformat(filters.get("until", "2100-01-01")).replace(tzinfo=UTC)
    expected: dict[tuple[str | None, str | None], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
    for r in records:
        if not since <= r.created_at < until:
            continue
        if filters.get("model", r.model) != r.model or filters.get("key", str(r.key_id)) != str(r.key_id):
            continue
        if "org" in filters and r.org_id != records[1].org_id:
            continue
        period = {"day": r.created_at.strftime("%Y-%m-%d"), "month": r.created_at.strftime("%Y-%m")}.get(
            bucket
        )
        owner = {"org": r.org_id, "user": r.user_id, "key": r.key_id, "model": r.model}.get(by)
        sums = expected[(period, None if owner is None else str(owner))]
        sums[0] += 1
        sums[1] += r.usage.input_tokens + r.usage.cache_read_input_tokens
        sums[2] += r.cost_usd or 0
    shown = {
        (row["period"], row["group"]): [
            Decimal(row["requests"]),
            Decimal(row["input_tokens"] + row["cache_read_input_tokens"]),
            Decimal(row["cost_usd"]),
        ]
        for row in report["data"]
    }
    assert shown == expected


async def test_hours_split_by_user_for_one_organisation(
    admin: httpx2.AsyncClient, records: list[UsageRecord]
) -> None:
    params = {"bucket": "hour", "by": "user", "org": "acme", "since": "2026-04-01", "until": "2026-05-01"}
    report = (await admin.get("/admin/usage/series", params=params)).json()
    expected: dict[tuple[str, str | None], int] = defaultdict(int)
    for r in records:
        if r.org_id == records[1].org_id and r.created_at < datetime(2026, 5, 1, tzinfo=UTC):
            expected[(r.created_at.strftime("%Y-%m-%dT%H"), "acme/alice" if r.user_id else None)] += (
                r.usage.output_tokens
            )
    shown = {(row["period"], row["label"]): row["output_tokens"] for row in report["data"]}
    assert shown == expected
    assert report["filters"]["org"] == "acme"


async def test_filters_by_key_and_model(admin: httpx2.AsyncClient, records: list[UsageRecord]) -> None:
    params = {"bucket": "none", "by": "key", "key": "1", "model": "claude-haiku-4-5"}
    report = (await admin.get("/admin/usage/series", params=params)).json()
    mine = [r for r in records if r.key_id == 1 and r.model == "claude-haiku-4-5"]
    assert len(report["data"]) == 1
    assert report["data"][0]["label"].startswith("laptop (")
    assert report["data"][0]["requests"] == len(mine)
    assert Decimal(report["data"][0]["cost_usd"]) == _cost(mine)


async def test_csv_has_the_rows_of_the_json(admin: httpx2.AsyncClient, records: list[UsageRecord]) -> None:
    params = {"bucket": "day", "by": "org"}
    as_json = (await admin.get("/admin/usage/series", params=params)).json()["data"]
    response = await admin.get("/admin/usage/series", params={**params, "format": "csv"})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["period"], r["label"], r["cost_usd"]) for r in rows] == [
        (r["period"], r["label"], r["cost_usd"]) for r in as_json
    ]
    assert sum(Decimal(r["cost_usd"]) for r in rows) == _cost(records)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"bucket": "week"}, "bucket must be one of hour, day, month, none"),
        ({"by": "team"}, "by must be one of"),
        ({"key": "abc"}, "key must be a key id"),
        ({"since": "yesterday-ish"}, "since:"),
        ({"user": "alice"}, "org as well"),
        ({"format": "xml"}, "format must be json or csv"),
    ],
)
async def test_bad_parameters_are_400(
    admin: httpx2.AsyncClient, records: list[UsageRecord], params: dict[str, str], fragment: str
) -> None:
    response = await admin.get("/admin/usage/series", params=params)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]["message"]


async def test_an_unknown_organisation_is_404(admin: httpx2.AsyncClient, records: list[UsageRecord]) -> None:
    response = await admin.get("/admin/usage/series", params={"org": "nobody"})
    assert response.status_code == 404


async def test_live_shows_upstreams_refusals_and_recent_errors(
    admin: httpx2.AsyncClient, store: Store
) -> None:
    org = await store.orgs.create_org("acme")
    now = datetime.now(UTC)
    await store.usage.insert_usage(
        [
            UsageRecord(request_id="req_ok", model="m", status=200, org_id=org.id, upstream="primary"),
            UsageRecord(
                request_id="req_refused",
                model="m",
                status=429,
                error_type="rate_limit_error",
                org_id=org.id,
                upstream="primary",
                created_at=now,
            ),
        ]
    )
    live = (await admin.get("/admin/live")).json()
    assert live["in_flight"] == 3
    assert live["upstreams"] == [
        {"name": "primary", "in_flight": 3, "waiting": 2, "refusals_last_hour": 1, "breaker": "open"}
    ]
    assert [(e["request_id"], e["org"], e["status"]) for e in live["recent_errors"]] == [
        ("req_refused", "acme", 429)
    ]


async def test_upgrading_to_daily_totals_adds_up_the_records_written_before(database_url: str) -> None:
    await upgrade_database(database_url, "0010")  # the revision before daily totals (0011)
    engine = create_engine(database_url)
    made = [
        UsageRecord(
            request_id=f"req_{n}",
            model="claude-sonnet-4-6" if n % 2 else None,
            status=200,
            created_at=datetime(2026, 6, 1 + n % 3, n, tzinfo=UTC),
            org_id=None if n == 0 else 1 + n % 2,
            key_id=n % 4 or None,
            usage=Usage(output_tokens=n),
            cost_usd=None if n == 5 else Decimal("0.0000001") * n,
        )
        for n in range(20)
    ]
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(UsageRow.__table__), [r.row() for r in made])
    finally:
        await engine.dispose()
    await upgrade_database(database_url)
    store = await Store.open(database_url, upgrade=False)
    try:
        for by in SeriesBy:
            query = UsageQuery(bucket=Bucket.DAY, by=by)
            assert rollup_dimension(query) is not None
            rows = await store.usage.series(query)
            assert sum(row.requests for row in rows) == len(made)
            assert sum(row.output_tokens for row in rows) == sum(r.usage.output_tokens for r in made)
            assert sum(row.cost_usd for row in rows) == sum(r.cost_usd or 0 for r in made)
            assert sum(row.unpriced_requests for row in rows) == 1
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("query", "dimension"),
    [
        (UsageQuery(bucket=Bucket.MONTH, by=SeriesBy.ORG), "model"),
        (UsageQuery(bucket=Bucket.DAY, by=SeriesBy.KEY, org_id=3), "key"),
        (UsageQuery(bucket=None, by=SeriesBy.TOTAL, user_id=4), "user"),
        (UsageQuery(by=SeriesBy.MODEL, model="m", since=datetime(2026, 1, 1, tzinfo=UTC)), "model"),
        (UsageQuery(bucket=Bucket.HOUR, by=SeriesBy.MODEL), None),
        (UsageQuery(by=SeriesBy.MODEL, key_id=1), None),
        (UsageQuery(by=SeriesBy.TOTAL, key_id=1, model="m"), None),
        (UsageQuery(by=SeriesBy.ORG, since=datetime(2026, 1, 1, 12, tzinfo=UTC)), None),
    ],
)
def test_which_reports_read_the_daily_totals(query: UsageQuery, dimension: str | None) -> None:
    assert rollup_dimension(query) == dimension


@pytest.mark.parametrize("bucket", ["hour", "month"])  # the records, and the daily totals
async def test_top_keeps_the_costliest_groups_and_adds_up_the_rest(
    admin: httpx2.AsyncClient, records: list[UsageRecord], bucket: str
) -> None:
    full = (await admin.get("/admin/usage/series", params={"bucket": "none", "by": "key"})).json()["data"]
    costliest = max(full, key=lambda row: Decimal(row["cost_usd"]))
    report = (
        await admin.get("/admin/usage/series", params={"bucket": bucket, "by": "key", "top": "1"})
    ).json()
    groups = {row["group"] for row in report["data"]}
    assert groups == {costliest["group"], "other"}
    other = [row for row in report["data"] if row["group"] == "other"]
    assert {row["label"] for row in other} == {"(all others)"}
    assert sum(row["requests"] for row in other) == len(records) - costliest["requests"]
    assert Decimal(report["totals"]["cost_usd"]) == _cost(records)
    assert (await admin.get("/admin/usage/series", params={"top": "0"})).status_code == 400
