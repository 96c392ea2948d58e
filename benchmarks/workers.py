"""Gateway CPU per call with flow state in memory, in Redis, and in Redis with ``--workers 2``, in one run.

Starts a simulator (``claudegate simulate --latency none``, unlimited tier) and three gateways in front of it:
``memory`` (one process, no Redis), ``redis`` (one process, ``redis_url`` set) and ``workers2``
(``claudegate serve --workers 2`` on the same Redis, under its own key prefix). An aiohttp client (keep-alive,
``--concurrency`` connections, non-streaming calls, warm-up first) drives each gateway in turn for a fixed
number of calls, in interleaved rounds (the order rotates each round). For each phase:

- gateway CPU per call: utime+stime of every process of the gateway (a worker's parent and its workers
  included) from ``/proc``, around the measured calls, divided by the calls;
- calls per second per busy core: calls divided by those CPU-seconds (the same figure inverted, as the
  capacity one core of gateway buys);
- for ``workers2``, each worker's share of the calls, from the ``x-claudegate-worker`` header of the replies.

Figures are medians over the rounds; ratios are the medians of each round's ratio (Redis against memory,
two workers against one on Redis), since the phases of a round run back to back.
Targets: Redis at most 1.3x memory's CPU per call; two workers within 1.1x of one Redis worker's CPU per
call (so calls per second per busy core stay flat); each worker takes 40-60% of the calls.

Layout (default ``split``): the gateways on core 0, the simulator and this client on core 1, as
``gateway_overhead.py`` does. Redis: ``CLAUDEGATE_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/13``);
each run uses fresh key prefixes. Run from the repository root::

    .venv/bin/python benchmarks/workers.py --rounds 3

Measured 2026-12-06 on a 2-core machine shared with other work (3 rounds of 3,000 calls, 64 connections):
memory 0.400 ms/call, Redis 0.410 (1.03x memory, rounds 0.94/1.04/1.03), two workers on Redis 0.403 (1.03x
one worker, rounds 1.07/0.89/1.03; 2,479 against 2,439 calls per second per busy core), each worker 50% of
the calls, a usage record for all 29,700 calls. Runs on the same machine vary: another run gave two workers
1.08x one (rounds 1.18/1.08/1.02), while memory and Redis themselves moved by 20% between its rounds.
Before allotments, Redis mode cost 2.25x memory mode's CPU per call.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from _processes import Proc, claudegate, free_port, wait_until_up

CLK_TCK = os.sysconf("SC_CLK_TCK")
FLUSH_WAIT_S = 0.8  # usage is written every 0.5 s: each phase pays for its own records
MODEL = "claude-sonnet-4-6"
TARGET_REDIS_RATIO = 1.3
TARGET_WORKERS_RATIO = 1.1
SHARE_RANGE = (0.40, 0.60)


@dataclass
class Gateway:
    name: str
    proc: Proc
    url: str
    phases: list[dict[str, float]] = field(default_factory=list)
    shares: list[dict[str, float]] = field(default_factory=list)

    def cpu_ticks(self) -> int:
        """CPU of the gateway's process and all its descendants (the workers of ``--workers``)."""
        total = 0
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                total += int(fields[11]) + int(fields[12])
        return total


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{parent}/task"):
                children = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
                found += [int(child) for child in children]
                pending += [int(child) for child in children]
    return found


async def drive(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: bytes,
    calls: int,
    concurrency: int,
) -> tuple[collections.Counter[str], int, float]:
    """``calls`` calls from ``concurrency`` connections: replies per worker header, errors, wall time."""
    workers: collections.Counter[str] = collections.Counter()
    errors = 0
    remaining = calls

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
                workers[response.headers.get("x-claudegate-worker", "-")] += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return workers, errors, time.perf_counter() - began


async def phase(gateway: Gateway, args: argparse.Namespace, key: str) -> int:
    """One measured phase, on connections of its own (so each phase spreads its connections afresh)."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        return await measure(session, gateway, args, key)


async def measure(
    session: aiohttp.ClientSession, gateway: Gateway, args: argparse.Namespace, key: str
) -> int:
    headers = {
        "x-api-key": key,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "x-simulator-reply-tokens": "100",
        "accept-encoding": "identity",
    }
    body = orjson.dumps(
        {
            "model": MODEL,
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Say something short."}],
        }
    )
    url = gateway.url + "/v1/messages"
    _, warm_errors, _ = await drive(session, url, headers, body, args.warmup, args.concurrency)
    await asyncio.sleep(FLUSH_WAIT_S)
    before = gateway.cpu_ticks()
    workers, errors, wall = await drive(session, url, headers, body, args.calls, args.concurrency)
    await asyncio.sleep(FLUSH_WAIT_S)
    cpu_s = (gateway.cpu_ticks() - before) / CLK_TCK
    gateway.phases.append(
        {
            "cpu_ms_per_call": cpu_s * 1000 / args.calls,
            "calls_per_busy_core_s": args.calls / cpu_s if cpu_s else 0.0,
            "calls_per_s": args.calls / wall,
        }
    )
    if len(workers) > 1 or "-" not in workers:
        gateway.shares.append({worker: count / args.calls for worker, count in sorted(workers.items())})
    print(
        f"  {gateway.name}: {gateway.phases[-1]['cpu_ms_per_call']:.3f} ms/call, "
        f"{args.calls / wall:.0f} calls/s, workers {dict(workers)}, errors {errors + warm_errors}",
        file=sys.stderr,
    )
    return args.warmup + args.calls


@contextlib.contextmanager
def processes(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[Proc, list[Gateway], str, int]]:
    split = args.layout == "split"
    if split:
        os.sched_setaffinity(0, {1})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDEGATE_", "ANTHROPIC_"))}
    env |= {
        "CLAUDEGATE_DATABASE_URL": args.database or f"sqlite+aiosqlite:///{workdir / 'claudegate.db'}",
        "CLAUDEGATE_LOG_LEVEL": "warning",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    created = subprocess.run(
        claudegate("keys", "create", "--org", "bench", "--json"), env=env, capture_output=True, check=True
    )
    key = json.loads(created.stdout)["key"]
    sim_port = free_port()
    simulator = Proc(
        "simulator",
        claudegate("simulate", "--port", str(sim_port), "--latency", "none"),
        env,
        "1" if split else None,
        workdir / "simulator.log",
    )
    upstream = {"CLAUDEGATE_UPSTREAM_URL": f"http://127.0.0.1:{sim_port}", "ANTHROPIC_API_KEY": "sk-bench"}
    redis = os.environ.get("CLAUDEGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    run = secrets.token_hex(4)
    variants = [
        ("memory", [], {}),
        ("redis", [], {"CLAUDEGATE_REDIS_URL": redis, "CLAUDEGATE_REDIS_PREFIX": f"bench-{run}-1:"}),
        (
            "workers2",
            ["--workers", "2"],
            {"CLAUDEGATE_REDIS_URL": redis, "CLAUDEGATE_REDIS_PREFIX": f"bench-{run}-2:"},
        ),
    ]
    gateways: list[Gateway] = []
    try:
        for name, extra, settings in variants:
            port = free_port()
            proc = Proc(
                name,
                claudegate("serve", "--port", str(port), *extra),
                env
                | upstream
                | {"CLAUDEGATE_USAGE_SPILL_FILE": str(workdir / f"spill-{name}.jsonl")}
                | settings,
                "0" if split else None,
                workdir / f"gateway-{name}.log",
            )
            gateways.append(Gateway(name, proc, f"http://127.0.0.1:{port}"))
        yield simulator, gateways, key, sim_port
    finally:
        for gateway in gateways:
            gateway.proc.stop()
        simulator.stop()


def paired(gateway: Gateway, baseline: Gateway, metric: str) -> tuple[float, list[float]]:
    """The median over rounds of ``gateway``'s figure over ``baseline``'s in the same round (rounds differ in
    what else the machine is doing; a round's phases run back to back), and each round's ratio."""
    ratios = [
        ours[metric] / theirs[metric] for ours, theirs in zip(gateway.phases, baseline.phases, strict=True)
    ]
    return statistics.median(ratios), ratios


def median(gateway: Gateway, metric: str) -> float:
    return statistics.median(phase[metric] for phase in gateway.phases)


def report(gateways: list[Gateway], usage: tuple[int, int]) -> tuple[str, bool]:
    by_name = {gateway.name: gateway for gateway in gateways}
    memory, redis, workers = by_name["memory"], by_name["redis"], by_name["workers2"]
    rows: list[tuple[str, str, str, str]] = []
    passed = True

    def row(metric: str, value: str, target: str, ok: bool | None) -> None:
        nonlocal passed
        verdict = "" if ok is None else "PASS" if ok else "FAIL"
        passed = passed and ok is not False
        rows.append((metric, value, target, verdict))

    for gateway in gateways:
        row(f"{gateway.name}: CPU ms/call", f"{median(gateway, 'cpu_ms_per_call'):.3f}", "", None)
    for gateway in gateways:
        row(
            f"{gateway.name}: calls/s per busy core",
            f"{median(gateway, 'calls_per_busy_core_s'):.0f}",
            "",
            None,
        )
    redis_ratio, rounds = paired(redis, memory, "cpu_ms_per_call")
    row(
        "redis / memory CPU per call",
        f"{redis_ratio:.2f}x (rounds: {', '.join(f'{r:.2f}' for r in rounds)})",
        f"<= {TARGET_REDIS_RATIO}x",
        redis_ratio <= TARGET_REDIS_RATIO,
    )
    workers_ratio, rounds = paired(workers, redis, "cpu_ms_per_call")
    row(
        "2 workers / 1 worker CPU per call (Redis)",
        f"{workers_ratio:.2f}x (rounds: {', '.join(f'{r:.2f}' for r in rounds)})",
        f"<= {TARGET_WORKERS_RATIO}x",
        workers_ratio <= TARGET_WORKERS_RATIO,
    )
    flat, _ = paired(workers, redis, "calls_per_busy_core_s")
    row(
        "calls/s per busy core, 2 workers / 1",
        f"{flat:.2f}x",
        f">= {1 / TARGET_WORKERS_RATIO:.2f}x",
        flat >= 0.909,
    )
    for worker in sorted({name for shares in workers.shares for name in shares}):
        share = statistics.median(shares.get(worker, 0.0) for shares in workers.shares)
        low, high = SHARE_RANGE
        row(f"worker {worker}: share of calls", f"{share:.0%}", f"{low:.0%}-{high:.0%}", low <= share <= high)
    row("usage records written / calls made", f"{usage[1]} / {usage[0]}", "all", usage[1] == usage[0])
    widths = [
        max(len(line[i]) for line in [("metric", "value", "target", "result"), *rows]) for i in range(4)
    ]
    lines = [
        "| "
        + " | ".join(h.ljust(w) for h, w in zip(("metric", "value", "target", "result"), widths, strict=True))
        + " |"
    ]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in rows
    ]
    return "\n".join(lines), passed


async def amain(args: argparse.Namespace) -> bool:
    with tempfile.TemporaryDirectory(prefix="cg-workers-") as tmp:
        workdir = Path(tmp)
        made = 0
        with processes(args, workdir) as (simulator, gateways, key, sim_port):
            await wait_until_up(f"http://127.0.0.1:{sim_port}/v1/models", simulator)
            for gateway in gateways:
                await wait_until_up(f"{gateway.url}/health", gateway.proc)
            for number in range(args.rounds):
                print(f"round {number + 1}", file=sys.stderr)
                shift = number % len(gateways)
                for gateway in gateways[shift:] + gateways[:shift]:
                    made += await phase(gateway, args, key)
        written = await usage_records(args, workdir)
    table, passed = report(gateways, (made, written))
    print(table)
    return passed


async def usage_records(args: argparse.Namespace, workdir: Path) -> int:
    if args.database is None:
        with contextlib.closing(sqlite3.connect(workdir / "claudegate.db")) as db:
            return int(db.execute("SELECT count(*) FROM usage_records").fetchone()[0])
    import asyncpg  # a PostgreSQL database (--database)

    connection = await asyncpg.connect(args.database.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return int(await connection.fetchval("SELECT count(*) FROM usage_records"))
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3000, help="measured calls per phase (default 3000)")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=64, help="client connections (default 64)")
    parser.add_argument("--layout", choices=("split", "none"), default="split")
    parser.add_argument(
        "--database",
        help="the gateways' database URL (default: a fresh SQLite file; a PostgreSQL one must start empty)",
    )
    args = parser.parse_args()
    sys.exit(0 if asyncio.run(amain(args)) else 1)


if __name__ == "__main__":
    main()
