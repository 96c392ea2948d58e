"""Usage records and the writer that gets every one of them into the database without slowing a request.

``UsageWriter.submit`` appends to a deque and returns: it is on the request path. A background task writes
the buffer in batches (every ``flush_interval_s``, or as soon as ``batch_size`` records wait). Nothing is
dropped:

- a failed write keeps its records and is retried with exponential backoff;
- while the database stays down and the buffer grows past ``max_pending``, the oldest records are appended to
  the spill file (JSON lines) so memory stays bounded;
- ``close()`` writes what is left, and if the database still refuses (or does not answer in time),
  appends it to the spill file;
- ``start()`` and every successful write after a spill import the spill file back;
- a batch the database refuses for what it holds (``UsageRejectedError``: a value it cannot store, not an
  outage) is split in halves until the records it refuses are alone; each of those goes to the dead-letter
  file (``<spill file>.rejected``, one JSON line with the reason) and is counted (``on_rejected``), the rest
  are written. So one bad record costs a few more transactions, never the records after it, and never
  comes back from the spill file.

Records hold no secrets (ids and token counts, never keys), so spilling them to disk is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Protocol

import orjson

from claudegate.wire.usage_tap import Usage

__all__ = ["UsageRecord", "UsageRejectedError", "UsageSink", "UsageWriter"]

logger = logging.getLogger(__name__)

_MAX_BACKOFF_S: Final = 30.0
_CANCEL_WAIT_S: Final = 1.0  # how long close waits for a cancelled write before spilling its records


@dataclass(slots=True)
class UsageRecord:
    """One call through the gateway, success or failure, as stored in ``usage_records``."""

    request_id: str
    model: str | None
    status: int
    created_at: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))
    upstream_request_id: str | None = None
    org_id: int | None = None
    user_id: int | None = None
    key_id: int | None = None
    upstream: str | None = None
    error_type: str | None = None
    # What the reply's usage reported: the token counts, and what else it said (speed, inference_geo,
    # server_tool_use, service_tier and any field added later), kept as it came.
    usage: Usage = dataclasses.field(default_factory=Usage)
    cost_usd: Decimal | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    streamed: bool = False
    attempts: int = 1
    batch: bool = False
    api: str = "anthropic"  # the API the client spoke: "anthropic", or "openai" (translated to Anthropic's)
    # Attribution the client offered (Claude Code's x-claude-code-session-id / -agent-id / -parent-agent-id).
    session_id: str | None = None
    agent_id: str | None = None
    parent_agent_id: str | None = None
    policy: str | None = None
    loop_id: str | None = None
    cached: bool = False  # answered from the gateway's response cache, at no cost
    message_id: str | None = None
    detail: dict[str, Any] | None = None  # admission wait and attempts (see store.tables.UsageRow.detail)

    def to_json(self) -> bytes:
        """One line of the spill file."""
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        fields["usage"] = self.usage.api_json()
        return orjson.dumps(fields, default=_json_default)

    @classmethod
    def from_json(cls, line: bytes | str) -> UsageRecord:
        data: dict[str, Any] = orjson.loads(line)
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        if data.get("cost_usd") is not None:
            data["cost_usd"] = Decimal(data["cost_usd"])
        if "usage" in data:
            data["usage"] = Usage.of(data["usage"])
        else:  # a line spilled by an earlier version, its usage in fields of their own
            reported: dict[str, Any] = data.pop("usage_details", None) or {}
            for name in _SPILLED_TOKEN_FIELDS:
                reported[name] = data.pop(name, 0)
            one_hour = data.pop("cache_creation_1h_input_tokens", 0)
            data["usage"] = Usage.of({**reported, "cache_creation": {"ephemeral_1h_input_tokens": one_hour}})
        return cls(**data)

    def row(self) -> dict[str, Any]:
        """The record as a row of ``usage_records``: its usage in the table's columns."""
        row = {name: getattr(self, name) for name in _RECORD_COLUMNS}
        usage = self.usage
        row.update(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            cache_creation_1h_input_tokens=usage.cache_creation_1h_input_tokens,
            usage_details=usage.details(),
        )
        return row


_SPILLED_TOKEN_FIELDS: Final = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)
_RECORD_COLUMNS: Final = tuple(
    field.name for field in dataclasses.fields(UsageRecord) if field.name != "usage"
)


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


class UsageRejectedError(Exception):
    """The database refused records for what they hold (a value it cannot store), not because it is down:
    retrying the same records can never succeed."""


class UsageSink(Protocol):
    async def insert_usage(self, records: Sequence[UsageRecord]) -> None:
        """Store the records in one transaction: all or none. Raises UsageRejectedError when the database
        refuses their content; any other exception means it could not be reached or written now."""
        ...


class UsageWriter:
    """Buffers usage records and writes them in batches from a background task. See the module docstring."""

    def __init__(
        self,
        sink: UsageSink,
        *,
        flush_interval_s: float,
        batch_size: int,
        spill_file: Path,
        max_pending: int | None = None,
        retry_base_s: float = 0.5,
        on_rejected: Callable[[], None] | None = None,
    ) -> None:
        self._sink = sink
        self._interval = flush_interval_s
        self._batch_size = batch_size
        self._spill_file = spill_file
        self._max_pending = max_pending if max_pending is not None else max(batch_size * 200, 10_000)
        self._retry_base = retry_base_s
        self._on_rejected = on_rejected
        self.rejected = 0  # records the database refused, moved to the dead-letter file
        self._queue: deque[UsageRecord] = deque()
        self._inflight: list[UsageRecord] = []
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._spilled = False
        # One writer at a time: close() and the background task must never send the same batch twice.
        self._lock = asyncio.Lock()

    @property
    def pending(self) -> int:
        """Records accepted but not yet in the database (buffered or being written)."""
        return len(self._queue) + len(self._inflight)

    @property
    def failing(self) -> bool:
        """True while the last write to the database failed."""
        return self._failures > 0

    def submit(self, record: UsageRecord) -> None:
        """Accept a record. Synchronous and O(1): it only appends to the buffer."""
        self._queue.append(record)
        if len(self._queue) >= self._batch_size:
            self._wake.set()

    async def start(self) -> None:
        """Import a spill file left by an earlier run, then start the background writer."""
        if self._task is not None:
            raise RuntimeError("UsageWriter already started")
        self._import_spill()
        self._task = asyncio.create_task(self._run(), name="claudegate-usage-writer")
        self._task.add_done_callback(_log_crash)

    async def flush(self) -> None:
        """Write everything buffered now (one attempt per batch); raises if the database refuses."""
        while self._queue or self._inflight:
            await self._write_batch()

    async def close(self, *, timeout_s: float = 10.0) -> None:
        """Stop the background task and write what is left within ``timeout_s``; whatever the database does
        not take by then is appended to the spill file."""
        self._closing = True
        self._stop.set()
        self._wake.set()
        try:
            async with asyncio.timeout(timeout_s):
                if self._task is not None:
                    # asyncio.wait does not re-raise: _log_crash logged any crash; the rest is flushed below.
                    await asyncio.wait([self._task])
                await self.flush()
        except Exception as exc:  # whatever the sink raised (or a timeout), the records must reach the file
            if self._task is not None:
                self._task.cancel()
                # Bounded: a write stuck in the database driver may not end at once even when cancelled,
                # and the records must reach the file before the process is stopped.
                await asyncio.wait([self._task], timeout=_CANCEL_WAIT_S)
            remaining = [*self._inflight, *self._queue]
            self._inflight.clear()
            self._queue.clear()
            self._spill(remaining)
            logger.error(
                "could not write %d usage records to the database at shutdown (%s); appended them to %s, "
                "they will be imported at the next start",
                len(remaining),
                _describe(exc),
                self._spill_file,
            )
        finally:
            self._task = None

    async def _run(self) -> None:
        while not self._closing:
            if self._failures:
                # Back off from a failing database; new records just wait (and overflow to the spill file).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self._backoff())
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            if self._closing:
                return
            await self._drain()

    def _backoff(self) -> float:
        return min(self._retry_base * 2.0 ** (self._failures - 1), _MAX_BACKOFF_S)

    async def _drain(self) -> None:
        """Write what is buffered, batch by batch; on a failure, keep the batch and return.

        Records that arrive while a batch is written wait for the next interval, unless a whole batch of them
        is waiting: chasing them would, under steady traffic, write a transaction every few calls.
        """
        first = True
        while (
            (self._queue or self._inflight)
            and not self._closing
            and (first or len(self._queue) >= self._batch_size)
        ):
            first = False
            try:
                await self._write_batch()
            except Exception as exc:  # any sink failure is retried; the records stay in _inflight
                self._failures += 1
                if self._failures == 1:
                    logger.warning("writing usage records failed (%s); retrying with backoff", _describe(exc))
                self._spill_overflow()
                return
            if self._failures:
                logger.info("writing usage records works again after %d failed attempts", self._failures)
                self._failures = 0
            if self._spilled:
                self._spilled = False
                self._import_spill()

    async def _write_batch(self) -> None:
        async with self._lock:
            if not self._inflight:
                take = min(self._batch_size, len(self._queue))
                self._inflight = [self._queue.popleft() for _ in range(take)]
            if self._inflight:
                try:
                    await self._sink.insert_usage(self._inflight)
                except UsageRejectedError:
                    await self._isolate(self._inflight)
                self._inflight = []

    async def _isolate(self, records: list[UsageRecord]) -> None:
        """Write ``records`` in ever smaller parts until each one the database refuses is alone; those go to
        the dead-letter file. If the database fails otherwise meanwhile, what is not yet written stays in
        ``_inflight`` and the error propagates (the usual backoff)."""
        done: set[int] = set()
        parts = [records]
        try:
            while parts:
                part = parts.pop()
                try:
                    await self._sink.insert_usage(part)
                except UsageRejectedError as exc:
                    if len(part) > 1:
                        middle = len(part) // 2
                        parts += [part[middle:], part[:middle]]
                        continue
                    self._dead_letter(part[0], exc)
                done.update(id(record) for record in part)
        finally:
            self._inflight = [record for record in records if id(record) not in done]

    def _dead_letter(self, record: UsageRecord, exc: UsageRejectedError) -> None:
        reason = _describe(exc.__cause__ or exc)
        self._write_rejected([orjson.dumps({"reason": reason, "record": orjson.loads(record.to_json())})])
        self.rejected += 1
        if self._on_rejected is not None:
            self._on_rejected()
        logger.error(
            "the database refused usage record %s (%s); kept it in %s",
            record.request_id,
            reason,
            self._rejected_file,
        )

    @property
    def _rejected_file(self) -> Path:
        return self._spill_file.with_name(self._spill_file.name + ".rejected")

    def _write_rejected(self, lines: Sequence[bytes]) -> None:
        self._rejected_file.parent.mkdir(parents=True, exist_ok=True)
        with self._rejected_file.open("ab") as out:
            out.writelines(line + b"\n" for line in lines)

    def _spill_overflow(self) -> None:
        excess = len(self._queue) - self._max_pending
        if excess <= 0:
            return
        oldest = [self._queue.popleft() for _ in range(excess)]
        self._spill(oldest)
        self._spilled = True
        logger.warning(
            "database unavailable and %d usage records buffered; moved %d of them to %s",
            self.pending + excess,
            excess,
            self._spill_file,
        )

    def _spill(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        self._spill_file.parent.mkdir(parents=True, exist_ok=True)
        with self._spill_file.open("ab") as spill:
            for record in records:
                spill.write(record.to_json() + b"\n")
            spill.flush()
            os.fsync(spill.fileno())

    def _import_spill(self) -> None:
        try:
            lines = self._spill_file.read_bytes().splitlines()
        except FileNotFoundError:
            return
        imported: list[UsageRecord] = []
        bad: list[bytes] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                imported.append(UsageRecord.from_json(line))
            except (ValueError, TypeError, KeyError) as exc:
                logger.error("unreadable line in usage spill file %s: %s", self._spill_file, exc)
                bad.append(
                    orjson.dumps({"reason": f"unreadable: {exc}", "line": line.decode("utf-8", "replace")})
                )
        if bad:
            # Keep what could not be read in the dead-letter file rather than dropping it.
            self._write_rejected(bad)
        self._spill_file.unlink()
        # Spilled records are older than anything buffered now, so they go first.
        self._queue.extendleft(reversed(imported))
        if imported:
            logger.info("imported %d usage records from %s", len(imported), self._spill_file)
            self._wake.set()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the usage writer stopped; records wait for close()", exc_info=task.exception())


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
