"""UsageWriter writing to a real database, and surviving one that is unreachable."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select

from claudegate.accounting.usage import UsageRecord, UsageWriter
from claudegate.store import GroupBy, Store
from claudegate.store._engine import create_engine
from claudegate.store.tables import UsageRow
from claudegate.wire.usage_tap import Usage


class RecordingSink:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.batch_sizes: list[int] = []

    async def insert_usage(self, records: Sequence[UsageRecord]) -> None:
        self.batch_sizes.append(len(records))
        await self.store.usage.insert_usage(records)


def record(n: int, org_id: int | None = None) -> UsageRecord:
    return UsageRecord(
        request_id=f"req_{n}",
        model="claude-haiku-4-5",
        status=200,
        org_id=org_id,
        usage=Usage(output_tokens=1),
    )


async def count(store: Store) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(UsageRow))).scalar_one())


async def test_batches_reach_the_database_and_close_flushes_the_rest(store: Store, tmp_path: Path) -> None:
    sink = RecordingSink(store)
    writer = UsageWriter(sink, flush_interval_s=60, batch_size=100, spill_file=tmp_path / "spill.jsonl")
    await writer.start()
    for n in range(250):
        writer.submit(record(n))
    await writer.close()
    assert await count(store) == 250
    assert writer.pending == 0
    assert sum(sink.batch_sizes) == 250
    assert max(sink.batch_sizes) <= 100
    assert not (tmp_path / "spill.jsonl").exists()


async def test_unreachable_database_spills_and_the_next_start_imports(
    migrated_database_url: str, tmp_path: Path
) -> None:
    spill = tmp_path / "spill.jsonl"
    if migrated_database_url.startswith("sqlite"):
        unreachable = f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
    else:
        unreachable = "postgresql+asyncpg://postgres@127.0.0.1:1/none"  # nothing listens on port 1
    down = Store(create_engine(unreachable))
    writer = UsageWriter(
        down.usage, flush_interval_s=0.01, batch_size=10, spill_file=spill, retry_base_s=0.01
    )
    await writer.start()
    for n in range(15):
        writer.submit(record(n))
    await writer.close(timeout_s=5)
    await down.close()
    assert len(spill.read_text().splitlines()) == 15

    store = await Store.open(migrated_database_url)
    try:
        acme = await store.orgs.create_org("acme")
        writer = UsageWriter(store.usage, flush_interval_s=0.01, batch_size=10, spill_file=spill)
        await writer.start()
        writer.submit(record(99, org_id=acme.id))
        await writer.close()
        assert not spill.exists()
        assert await count(store) == 16
        rows = await store.usage.report(group_by=GroupBy.MODEL)
        assert [(row.group, row.requests, row.output_tokens) for row in rows] == [
            ("claude-haiku-4-5", 16, 16)
        ]
    finally:
        await store.close()


async def test_client_text_is_stored_safely_and_a_refused_record_does_not_wedge_the_writer(
    store: Store, tmp_path: Path
) -> None:
    spill = tmp_path / "spill.jsonl"
    writer = UsageWriter(store.usage, flush_interval_s=60, batch_size=50, spill_file=spill)
    await writer.start()
    poison = [
        UsageRecord(request_id="req_nul", model="claude\x00-haiku", status=404),
        UsageRecord(request_id="req_long", model="m" * 300, status=404),
        UsageRecord(request_id="req_id\x00" + "x" * 100, model=None, status=400, error_type="e\x00" * 50),
        # A value no column can hold (past 32 bits on PostgreSQL, 63 on SQLite): refused.
        UsageRecord(
            request_id="req_huge",
            model="claude-haiku-4-5",
            status=200,
            usage=Usage(input_tokens=2**63),
        ),
    ]
    for n in range(5):
        writer.submit(record(n))
    for item in poison:
        writer.submit(item)
    for n in range(5, 10):
        writer.submit(record(n))
    await writer.close()

    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(UsageRow.request_id, UsageRow.model, UsageRow.error_type))).all()
    stored = {row.request_id: row for row in rows}
    assert len(stored) == 13  # the ten plain records and three poison ones, made safe
    assert stored["req_nul"].model == "claude-haiku"
    assert stored["req_long"].model == "m" * 128
    [long_id] = [request_id for request_id in stored if request_id.startswith("req_id")]
    assert long_id == ("req_id" + "x" * 100)[:64]
    assert stored[long_id].error_type == "e" * 50
    assert writer.rejected == 1
    dead = (tmp_path / "spill.jsonl.rejected").read_text().splitlines()
    assert len(dead) == 1
    assert '"req_huge"' in dead[0]
    assert not spill.exists()
