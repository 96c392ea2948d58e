"""The fault matrix: what clients see through the gateway when its upstreams fail often, against the plain
SDK in front of one such upstream, in one run.

Two simulators (``claudegate simulate``), each failing at random: 10% ``overloaded`` (529), 5%
``server_error`` (500), 2% ``midstream_error`` (a stream that breaks off with an ``error`` event; a
non-streamed reply answered 529 after it was generated) and 1% ``drop_connection`` (the connection cut half
way through the reply). Arms, each with the official ``anthropic`` SDK at ``max_retries=0`` (the client
retries nothing itself), ``--calls`` non-streaming and ``--streams`` streaming calls at ``--concurrency``:

- **gateway-sqlite**, **gateway-postgresql**: ``claudegate serve`` (its defaults: up to 4 attempts within
  the call's deadline, breakers, failover) with both simulators as ``[[upstreams]]``, on a fresh SQLite
  file and on a fresh PostgreSQL database;
- **sdk**: the SDK straight to one of the simulators (the baseline);
- **sdk-retries**: the same with the SDK's own retries (``max_retries=2``, its default), for reference.

What is measured, per arm:

- non-streaming calls answered 200, as a share (target for the gateway: at least 99.9%);
- streams: completed (``message_stop``), ended by an ``error`` event (what the SDK raises as
  ``APIStatusError`` while iterating), cut without one (a connection error after the stream began), and
  refused before they began (an HTTP error status); target for the gateway: no stream cut without an
  ``error`` event;
- for the gateway arms, the usage records (read after the gateway has stopped, so all are flushed):
  exactly one per call, and each call's ``x-claudegate-request-id`` among them.

Run from the repository root (PostgreSQL at ``--postgres-url``; ``--no-postgres`` to leave it out)::

    .venv/bin/python benchmarks/fault_matrix.py
    .venv/bin/python benchmarks/fault_matrix.py --calls 300 --streams 100   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import asyncpg
import httpx2
import orjson
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _processes import Proc, claudegate, free_port, wait_until_up
from claudegate.store import Store
from claudegate.store.tables import UsageRow

FAULTS = ("overloaded=0.10", "server_error=0.05", "midstream_error=0.02", "drop_connection=0.01")
MODEL = "claude-sonnet-4-6"
REPLY_TOKENS = "60"


@dataclass(slots=True)
class Tally:
    """What one arm's client saw."""

    calls: int = 0
    calls_ok: int = 0
    call_errors: Counter[str] = field(default_factory=Counter)
    streams: int = 0
    streams_completed: int = 0
    streams_error_event: int = 0
    streams_cut: int = 0
    streams_refused: int = 0
    request_ids: set[str] = field(default_factory=set)
    seconds: float = 0.0


async def one_call(sdk: anthropic.AsyncAnthropic, index: int, tally: Tally) -> None:
    messages: Any = [{"role": "user", "content": f"Call number {index}: tell me something."}]
    headers = {"x-simulator-reply-tokens": REPLY_TOKENS}
    tally.calls += 1
    try:
        raw = await sdk.messages.with_raw_response.create(
            model=MODEL, max_tokens=200, messages=messages, extra_headers=headers
        )
        await raw.parse()
        tally.calls_ok += 1
        _note_id(tally, raw.headers)
    except anthropic.APIStatusError as error:
        tally.call_errors[str(error.status_code)] += 1
        _note_id(tally, error.response.headers)
    except anthropic.APIConnectionError as error:
        tally.call_errors[f"connection: {type(error.__cause__ or error).__name__}"] += 1


async def one_stream(sdk: anthropic.AsyncAnthropic, index: int, tally: Tally) -> None:
    messages: Any = [{"role": "user", "content": f"Stream number {index}: tell me something."}]
    headers = {"x-simulator-reply-tokens": REPLY_TOKENS}
    tally.streams += 1
    try:
        stream = await sdk.messages.create(
            model=MODEL, max_tokens=200, messages=messages, extra_headers=headers, stream=True
        )
    except anthropic.APIStatusError as error:
        tally.streams_refused += 1
        _note_id(tally, error.response.headers)
        return
    except anthropic.APIConnectionError:
        tally.streams_refused += 1
        return
    _note_id(tally, stream.response.headers)
    stopped = False
    try:
        async for event in stream:
            stopped = stopped or event.type == "message_stop"
    except anthropic.APIStatusError:
        tally.streams_error_event += 1
        return
    except (anthropic.APIConnectionError, httpx2.HTTPError):
        tally.streams_cut += 1
        return
    if stopped:
        tally.streams_completed += 1
    else:
        tally.streams_cut += 1  # ended without message_stop and without an error event


def _note_id(tally: Tally, headers: Any) -> None:
    request_id = headers.get("x-claudegate-request-id")
    if request_id:
        tally.request_ids.add(request_id)


async def drive(
    base_url: str, api_key: str, calls: int, streams: int, concurrency: int, max_retries: int = 0
) -> Tally:
    """``calls`` non-streaming and ``streams`` streaming calls, interleaved, ``concurrency`` at a time."""
    tally = Tally()
    jobs = [("call", i) for i in range(calls)] + [("stream", i) for i in range(streams)]
    # Interleave: a stream after every few calls, so both meet the same upstream state.
    jobs.sort(key=lambda job: job[1] / max(1, calls if job[0] == "call" else streams))
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    sdk = anthropic.AsyncAnthropic(base_url=base_url, api_key=api_key, max_retries=max_retries, timeout=120)

    async def worker() -> None:
        while not queue.empty():
            kind, index = queue.get_nowait()
            await (one_call if kind == "call" else one_stream)(sdk, index, tally)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.seconds = time.perf_counter() - began
    await sdk.close()
    return tally


async def new_key(database_url: str) -> tuple[str, int]:
    store = await Store.open(database_url)
    try:
        org = await store.orgs.create_org(f"fault-matrix-{secrets.token_hex(4)}")
        key = await store.keys.create_key(org_id=org.id, name="bench")
    finally:
        await store.close()
    return key.key, key.row.id


async def records_of(database_url: str, key_id: int) -> tuple[int, int, set[str]]:
    """The key's usage records: how many, how many distinct request ids, and the ids."""
    store = await Store.open(database_url, upgrade=False)
    try:
        async with store.engine.connect() as conn:
            rows = (await conn.execute(select(UsageRow.request_id).where(UsageRow.key_id == key_id))).all()
            distinct = (
                await conn.execute(
                    select(func.count(func.distinct(UsageRow.request_id))).where(UsageRow.key_id == key_id)
                )
            ).scalar_one()
    finally:
        await store.close()
    return len(rows), int(distinct), {row[0] for row in rows}


async def gateway_arm(
    name: str, database_url: str, simulators: list[str], args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    key, key_id = await new_key(database_url)
    port = free_port()
    upstreams = [
        {"name": f"sim{n}", "url": url, "api_key": "sk-bench", "tier": "unlimited"}
        for n, url in enumerate(simulators)
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDEGATE_")}
    env.pop("ANTHROPIC_API_KEY", None)
    env.update(
        {
            "CLAUDEGATE_DATABASE_URL": database_url,
            "CLAUDEGATE_UPSTREAMS": orjson.dumps(upstreams).decode(),
            "CLAUDEGATE_LOG_LEVEL": "error",
            "CLAUDEGATE_USAGE_SPILL_FILE": str(tmp / f"{name}-spill.jsonl"),
        }
    )
    if args.retry_attempts is not None:
        env["CLAUDEGATE_RETRY_MAX_ATTEMPTS"] = str(args.retry_attempts)
    gateway = Proc(
        name, claudegate("serve", "--host", "127.0.0.1", "--port", str(port)), env, None, tmp / f"{name}.log"
    )
    try:
        await wait_until_up(f"http://127.0.0.1:{port}/health", gateway)
        tally = await drive(f"http://127.0.0.1:{port}", key, args.calls, args.streams, args.concurrency)
    finally:
        gateway.stop()  # SIGTERM: the gateway writes every buffered record before it exits
    count, distinct, ids = await records_of(database_url, key_id)
    result = summary(name, tally)
    result.update(
        {
            "records": count,
            "distinct_records": distinct,
            "calls_without_record": len(tally.request_ids - ids),
        }
    )
    return result


def summary(name: str, tally: Tally) -> dict[str, Any]:
    return {
        "arm": name,
        "calls": tally.calls,
        "calls_ok": tally.calls_ok,
        "calls_ok_share": tally.calls_ok / tally.calls if tally.calls else 0.0,
        "call_errors": dict(tally.call_errors),
        "streams": tally.streams,
        "streams_completed": tally.streams_completed,
        "streams_error_event": tally.streams_error_event,
        "streams_cut": tally.streams_cut,
        "streams_refused": tally.streams_refused,
        "seconds": round(tally.seconds, 1),
    }


async def postgres_database(server_url: str) -> tuple[str, str]:
    name = f"claudegate_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = server_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return name, f"{base}/{name}"


async def drop_postgres_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def print_table(results: list[dict[str, Any]]) -> None:
    baseline = next(r for r in results if r["arm"] == "sdk")
    print()
    print(
        "| arm | calls 200 | share | vs sdk | streams: completed / error event / cut / refused "
        "| records (distinct) for calls | s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        records = (
            f"{r['records']} ({r['distinct_records']}) for {r['calls'] + r['streams']}, "
            f"{r['calls_without_record']} missing"
            if "records" in r
            else "-"
        )
        ratio = (
            (1 - r["calls_ok_share"]) / (1 - baseline["calls_ok_share"])
            if baseline["calls_ok_share"] < 1
            else 0
        )
        print(
            f"| {r['arm']} | {r['calls_ok']}/{r['calls']} | {r['calls_ok_share']:.2%} | "
            f"{ratio:.2f}x the failures | {r['streams_completed']} / {r['streams_error_event']} / "
            f"{r['streams_cut']} / {r['streams_refused']} | {records} | {r['seconds']} |"
        )
    print()
    for r in results:
        print(f"{r['arm']}: non-streaming errors {r['call_errors']}")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1000, help="non-streaming calls per arm")
    parser.add_argument("--streams", type=int, default=300, help="streaming calls per arm")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--seed", type=int, default=14, help="seed of the simulators' random faults")
    parser.add_argument(
        "--retry-attempts", type=int, help="the gateway's retry_max_attempts (default: its own default, 4)"
    )
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="fault-matrix-"))
    simulators: list[Proc] = []
    urls: list[str] = []
    results: list[dict[str, Any]] = []
    try:
        for n in range(2):
            port = free_port()
            faults = [part for fault in FAULTS for part in ("--fault", fault)]
            argv = claudegate("simulate", "--port", str(port), "--seed", str(args.seed + n), *faults)
            simulators.append(Proc(f"simulator{n}", argv, dict(os.environ), None, tmp / f"simulator{n}.log"))
            urls.append(f"http://127.0.0.1:{port}")
        for proc, url in zip(simulators, urls, strict=True):
            await wait_until_up(f"{url}/v1/models", proc)

        print(f"baseline: the SDK straight to one simulator ({', '.join(FAULTS)})", flush=True)
        tally = await drive(urls[0], "sk-bench", args.calls, args.streams, args.concurrency)
        results.append(summary("sdk", tally))
        print(
            "for reference: the SDK with its own retries (max_retries=2) straight to one simulator",
            flush=True,
        )
        tally = await drive(urls[0], "sk-bench", args.calls, args.streams, args.concurrency, max_retries=2)
        results.append(summary("sdk-retries", tally))

        sqlite_url = f"sqlite+aiosqlite:///{tmp / 'gateway.db'}"
        print("gateway on SQLite", flush=True)
        results.append(await gateway_arm("gateway-sqlite", sqlite_url, urls, args, tmp))
        if not args.no_postgres:
            name, pg_url = await postgres_database(args.postgres_url)
            try:
                print("gateway on PostgreSQL", flush=True)
                results.append(await gateway_arm("gateway-postgresql", pg_url, urls, args, tmp))
            finally:
                await drop_postgres_database(args.postgres_url, name)
    finally:
        for proc in simulators:
            proc.stop()
    print_table(results)
    print(f"\nlogs in {tmp}")
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    asyncio.run(main())
