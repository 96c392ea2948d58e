"""The UsageWriter against an in-memory sink whose failures the test controls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from claudegate.accounting.usage import UsageRecord, UsageRejectedError, UsageWriter
from claudegate.wire.usage_tap import Usage
from tests.unit.virtual_time import now, virtual_time


class FlakySink:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.fail_next = 0
        self.down = False
        self.hang = False
        self.poison: set[str] = set()  # request ids the database refuses to store
        self.attempts = 0

    @property
    def written(self) -> list[str]:
        return [request_id for batch in self.batches for request_id in batch]

    async def insert_usage(self, records: Sequence[UsageRecord]) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.down or self.fail_next:
            self.fail_next = max(self.fail_next - 1, 0)
            raise ConnectionRefusedError("database down")
        self.attempts += 1
        refused = [record.request_id for record in records if record.request_id in self.poison]
        if refused:
            raise UsageRejectedError(f"invalid byte sequence in {refused[0]}")
        self.batches.append([record.request_id for record in records])


def record(n: int) -> UsageRecord:
    return UsageRecord(
        request_id=f"req_{n:04d}",
        model="claude-sonnet-4-5",
        status=200,
        usage=Usage(input_tokens=n),
    )


async def eventually(condition: Callable[[], bool], within_s: float = 3.0) -> None:
    for _ in range(int(within_s / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"not true within {within_s} s")


# File checks as plain functions: the tests are async, and ruff rightly flags blocking calls written there.
def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def exists(path: Path) -> bool:
    return path.exists()


def write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


@pytest.fixture
def sink() -> FlakySink:
    return FlakySink()


@pytest.fixture
def spill(tmp_path: Path) -> Path:
    return tmp_path / "spill.jsonl"


def writer_for(sink: FlakySink, spill: Path, **options: float) -> UsageWriter:
    settings: dict[str, float] = {"flush_interval_s": 0.02, "batch_size": 10, "retry_base_s": 0.01}
    settings.update(options)
    return UsageWriter(
        sink,
        flush_interval_s=settings["flush_interval_s"],
        batch_size=int(settings["batch_size"]),
        spill_file=spill,
        retry_base_s=settings["retry_base_s"],
        max_pending=int(settings["max_pending"]) if "max_pending" in settings else None,
    )


async def test_records_are_written_on_the_interval(sink: FlakySink, spill: Path) -> None:
    writer = writer_for(sink, spill)
    await writer.start()
    for n in range(3):
        writer.submit(record(n))
    assert writer.pending == 3
    await eventually(lambda: len(sink.written) == 3)
    assert writer.pending == 0
    await writer.close()


async def test_a_full_batch_is_written_without_waiting_for_the_interval(sink: FlakySink, spill: Path) -> None:
    writer = writer_for(sink, spill, flush_interval_s=60, batch_size=5)
    await writer.start()
    for n in range(5):
        writer.submit(record(n))
    await eventually(lambda: len(sink.written) == 5, within_s=1.0)
    writer.submit(record(5))
    await asyncio.sleep(0.05)
    assert len(sink.written) == 5  # a partial batch waits for the interval or close
    await writer.close()
    assert sink.written == [f"req_{n:04d}" for n in range(6)]


async def test_failed_writes_are_retried_in_order_without_duplicates(sink: FlakySink, spill: Path) -> None:
    writer = writer_for(sink, spill)
    await writer.start()
    sink.fail_next = 3
    for n in range(25):
        writer.submit(record(n))
    await eventually(lambda: writer.failing)
    await eventually(lambda: len(sink.written) == 25)
    assert not writer.failing
    assert sink.written == [f"req_{n:04d}" for n in range(25)]
    assert all(len(batch) <= 10 for batch in sink.batches)
    await writer.close()
    assert not exists(spill)


async def test_close_spills_what_the_database_refuses_and_start_imports_it(
    sink: FlakySink, spill: Path
) -> None:
    sink.down = True
    writer = writer_for(sink, spill)
    await writer.start()
    first = record(1)
    first.cost_usd = Decimal("0.000123456789")
    first.created_at = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
    writer.submit(first)
    writer.submit(record(2))
    await writer.close()
    assert len(lines(spill)) == 2
    assert all(b"cg-" not in line for line in lines(spill))

    sink.down = False
    again = writer_for(sink, spill)
    await again.start()
    assert not exists(spill)
    await again.close()
    assert sink.written == ["req_0001", "req_0002"]


def test_spill_lines_round_trip_every_field() -> None:
    original = UsageRecord(
        request_id="req_1",
        model="claude-opus-4-7",
        status=529,
        created_at=datetime(2026, 11, 20, 8, 30, 1, 123456, tzinfo=UTC),
        upstream_request_id="req_up",
        org_id=1,
        user_id=2,
        key_id=3,
        upstream="anthropic",
        error_type="overloaded_error",
        usage=Usage(
            input_tokens=10,
            output_tokens=20,
            cache_creation_input_tokens=30,
            cache_read_input_tokens=40,
            cache_creation_1h_input_tokens=5,
        ),
        cost_usd=Decimal("0.0000000150"),
        latency_ms=12.5,
        ttft_ms=3.25,
        streamed=True,
        attempts=3,
        batch=True,
    )
    assert UsageRecord.from_json(original.to_json()) == original


def test_a_spill_line_keeps_what_usage_said_beyond_the_token_counts() -> None:
    usage = Usage.of(
        {"input_tokens": 3, "service_tier": "standard", "server_tool_use": {"web_search_requests": 2}}
    )
    original = UsageRecord(request_id="req_2", model="claude-opus-4-7", status=200, usage=usage)
    read = UsageRecord.from_json(original.to_json())
    assert read == original
    assert read.row()["usage_details"] == {
        "service_tier": "standard",
        "server_tool_use": {"web_search_requests": 2},
    }


def test_a_spill_line_of_the_earlier_layout_is_read_back() -> None:
    """A spill file left by the version that stored usage in fields of their own is still imported whole."""
    line = orjson.dumps(
        {
            "request_id": "req_old",
            "model": "claude-opus-4-7",
            "status": 200,
            "created_at": "2026-11-20T08:30:01+00:00",
            "input_tokens": 10,
            "output_tokens": 20,
            "cache_creation_input_tokens": 30,
            "cache_read_input_tokens": 40,
            "cache_creation_1h_input_tokens": 5,
            "usage_details": {"speed": "fast"},
            "cost_usd": "0.5",
        }
    )
    read = UsageRecord.from_json(line)
    row = read.row()
    assert (row["input_tokens"], row["output_tokens"], row["cache_creation_input_tokens"]) == (10, 20, 30)
    assert (row["cache_read_input_tokens"], row["cache_creation_1h_input_tokens"]) == (40, 5)
    assert row["usage_details"] == {"speed": "fast"}
    assert read.cost_usd == Decimal("0.5")


async def test_an_outage_spills_the_overflow_and_recovers_it(sink: FlakySink, spill: Path) -> None:
    sink.down = True
    writer = writer_for(sink, spill, max_pending=20)
    await writer.start()
    for n in range(50):
        writer.submit(record(n))
    await eventually(lambda: exists(spill))
    assert writer.pending <= 20 + 10  # the buffer stays bounded while the database is down
    sink.down = False
    await eventually(lambda: len(sink.written) == 50)
    assert sorted(sink.written) == [f"req_{n:04d}" for n in range(50)]
    assert not exists(spill)
    await writer.close()


async def test_close_does_not_hang_on_a_database_that_never_answers(sink: FlakySink, spill: Path) -> None:
    sink.hang = True
    writer = writer_for(sink, spill)
    await writer.start()
    writer.submit(record(1))
    await asyncio.sleep(0.05)
    await writer.close(timeout_s=0.2)
    assert [UsageRecord.from_json(line).request_id for line in lines(spill)] == ["req_0001"]


class StubbornSink(FlakySink):
    """A database driver stuck in a write that does not let go when cancelled (it finishes its statement
    first, and the statement waits on a lock)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = asyncio.Event()

    async def insert_usage(self, records: Sequence[UsageRecord]) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await self.released.wait()
            raise


@virtual_time
async def test_close_does_not_hang_on_a_write_that_ignores_its_cancellation(spill: Path) -> None:
    stubborn = StubbornSink()
    writer = writer_for(stubborn, spill)
    await writer.start()
    writer.submit(record(1))
    await asyncio.sleep(0.05)  # the write has started, and hangs
    started = now()
    await writer.close(timeout_s=2.0)
    assert now() - started <= 3.0  # its timeout, and a bounded wait for the cancelled write
    assert [UsageRecord.from_json(line).request_id for line in lines(spill)] == ["req_0001"]
    stubborn.released.set()


async def test_unreadable_spill_lines_are_kept_aside(sink: FlakySink, spill: Path) -> None:
    write(spill, record(1).to_json() + b"\n{not json\n" + record(2).to_json() + b"\n")
    writer = writer_for(sink, spill)
    await writer.start()
    await writer.close()
    assert sink.written == ["req_0001", "req_0002"]
    [kept] = lines(spill.with_name("spill.jsonl.rejected"))
    assert orjson.loads(kept)["line"] == "{not json"
    assert orjson.loads(kept)["reason"].startswith("unreadable")


async def test_a_record_the_database_refuses_is_set_aside_and_the_rest_written(
    sink: FlakySink, spill: Path
) -> None:
    sink.poison = {"req_0003", "req_0007"}
    counted: list[None] = []
    writer = UsageWriter(
        sink, flush_interval_s=60, batch_size=10, spill_file=spill, on_rejected=lambda: counted.append(None)
    )
    await writer.start()
    for n in range(10):
        writer.submit(record(n))
    await writer.flush()
    writer.submit(record(10))  # the writer is not wedged: the next batch goes in at once
    await writer.close()
    assert sorted(sink.written) == [f"req_{n:04d}" for n in range(11) if n not in (3, 7)]
    assert writer.rejected == 2
    assert len(counted) == 2
    dead = [orjson.loads(line) for line in lines(spill.with_name("spill.jsonl.rejected"))]
    assert [entry["record"]["request_id"] for entry in dead] == ["req_0003", "req_0007"]
    assert "invalid byte sequence" in dead[0]["reason"]
    assert not exists(spill)


async def test_a_refused_record_in_the_spill_file_does_not_come_back(sink: FlakySink, spill: Path) -> None:
    write(spill, record(1).to_json() + b"\n" + record(2).to_json() + b"\n")
    sink.poison = {"req_0002"}
    writer = writer_for(sink, spill)
    await writer.start()
    await writer.close()
    assert sink.written == ["req_0001"]
    attempts = sink.attempts
    writer = writer_for(sink, spill)  # the next start has nothing left to import
    await writer.start()
    await writer.close()
    assert sink.attempts == attempts
    assert not exists(spill)


async def test_an_outage_while_isolating_keeps_the_unwritten_records(sink: FlakySink, spill: Path) -> None:
    sink.poison = {"req_0000"}
    writer = writer_for(sink, spill, flush_interval_s=60)
    await writer.start()
    for n in range(4):
        writer.submit(record(n))
    original = sink.insert_usage
    calls = 0

    async def refuse_then_fail(records: Sequence[UsageRecord]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # the batch and its first half were refused; then the database goes away
            raise ConnectionRefusedError("database down")
        await original(records)

    sink.insert_usage = refuse_then_fail  # type: ignore[method-assign]
    with pytest.raises(ConnectionRefusedError):
        await writer.flush()
    assert writer.pending == 4
    await writer.close()
    assert sorted(sink.written) == ["req_0001", "req_0002", "req_0003"]
    assert writer.rejected == 1
