"""What the response cache saves and what compression costs, measured in one run against one gateway.

Starts a simulator (``claudegate simulate --latency none``) and a gateway in front of it (``claudegate
serve``, usage metered to SQLite), then drives the gateway with an aiohttp client (keep-alive, one call at a
time, warm-up first) in interleaved rounds of four phases:

- ``pass-through``: a JSON call the cache does not touch (``x-claudegate-cache: off``), and ``cache hit``:
  the same call answered from the cache (``x-claudegate-cache: on``; the warm-up stores it). Figure: gateway
  CPU per call (utime+stime of the gateway process from ``/proc/PID/stat``, usage records flushed inside the
  phase), and the ratio hit / pass-through within each round.
- ``stream plain`` and ``stream gzip``/``br``/``zstd``: a streamed call whose client sends
  ``accept-encoding: identity``, and the same with ``accept-encoding`` naming one coding (compressed, flushed
  per event). Figure: time to first byte (request sent to the first chunk of the body), and what each coding
  adds within each round.

Reported figures are medians over rounds. The gateway is pinned to core 0, the simulator and this client to
core 1. Run from the repository root::

    .venv/bin/python benchmarks/cache_compression.py --json cache_compression.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from _processes import Proc, claudegate, free_port, wait_until_up

CLK_TCK = os.sysconf("SC_CLK_TCK")
FLUSH_WAIT_S = 0.8  # the gateway writes usage every 0.5 s: wait that out around each phase
MODEL = "claude-sonnet-4-6"  # a model the simulator still serves (4-5 is retired)
TARGET_CACHE_CPU_RATIO = 1.0  # a hit must cost less gateway CPU than a pass-through call
TARGET_COMPRESSED_TTFB_MS = 0.2  # what compression may add to a stream's time to first byte
CODINGS = ("gzip", "br", "zstd")

PHASES = {
    "pass-through": (False, {"x-claudegate-cache": "off", "accept-encoding": "identity"}),
    "cache hit": (False, {"x-claudegate-cache": "on", "accept-encoding": "identity"}),
    "stream plain": (True, {"x-claudegate-cache": "off", "accept-encoding": "identity"}),
    **{
        f"stream {coding}": (True, {"x-claudegate-cache": "off", "accept-encoding": coding})
        for coding in CODINGS
    },
}


async def drive(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes, calls: int
) -> tuple[list[float], int]:
    """``calls`` calls one after another; times to first byte (s) and errors."""
    ttfbs: list[float] = []
    errors = 0
    for _ in range(calls):
        started = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            first: float | None = None
            async for _chunk in response.content.iter_any():
                if first is None:
                    first = time.perf_counter()
            if response.status != 200 or first is None:
                errors += 1
            else:
                ttfbs.append(first - started)
    return ttfbs, errors


async def measure(args: argparse.Namespace, gateway: Proc, url: str, key: str) -> dict[str, Any]:
    rounds: list[dict[str, dict[str, float]]] = []
    errors = 0
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for number in range(args.rounds):
            figures: dict[str, dict[str, float]] = {}
            names = list(PHASES) if number % 2 == 0 else list(reversed(PHASES))
            for name in names:
                stream, extra = PHASES[name]
                body = orjson.dumps(
                    {
                        "model": MODEL,
                        "max_tokens": 1024,
                        "stream": stream,
                        "messages": [{"role": "user", "content": "Say something about caching."}],
                    }
                )
                headers = {
                    "x-api-key": key,
                    "anthropic-version": "2023-06-01",
                    "content-type": "application/json",
                    "x-simulator-reply-tokens": str(args.reply_tokens),
                    **extra,
                }
                _, warm_errors = await drive(session, url, headers, body, args.warmup)
                await asyncio.sleep(FLUSH_WAIT_S)
                before = gateway.cpu_ticks()
                ttfbs, phase_errors = await drive(session, url, headers, body, args.calls)
                await asyncio.sleep(FLUSH_WAIT_S)
                cpu_ms = (gateway.cpu_ticks() - before) * 1000 / CLK_TCK / args.calls
                errors += warm_errors + phase_errors
                figures[name] = {"cpu_ms": cpu_ms, "ttfb_p50_ms": statistics.median(ttfbs) * 1000}
                print(
                    f"  round {number + 1} {name:<13} gw-cpu={cpu_ms:.3f}ms "
                    f"ttfb50={figures[name]['ttfb_p50_ms']:.3f}ms",
                    file=sys.stderr,
                    flush=True,
                )
            rounds.append(figures)
    ratio = statistics.median(r["cache hit"]["cpu_ms"] / r["pass-through"]["cpu_ms"] for r in rounds)
    added = {
        coding: statistics.median(
            r[f"stream {coding}"]["ttfb_p50_ms"] - r["stream plain"]["ttfb_p50_ms"] for r in rounds
        )
        for coding in CODINGS
    }
    median = {
        name: {
            figure: statistics.median(r[name][figure] for r in rounds) for figure in ("cpu_ms", "ttfb_p50_ms")
        }
        for name in PHASES
    }
    return {
        "date": time.strftime("%Y-%m-%d"),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "errors": errors,
        "median": median,
        "cache_hit_cpu_ratio": ratio,
        "added_ttfb_ms": added,
        "cache_verdict": "pass" if ratio < TARGET_CACHE_CPU_RATIO else "FAIL",
        "compression_verdict": (
            "pass" if all(ms <= TARGET_COMPRESSED_TTFB_MS for ms in added.values()) else "FAIL"
        ),
        "rounds": rounds,
    }


def prepare(workdir: Path) -> tuple[dict[str, str], str]:
    """The servers' environment, and a gateway key of organisation ``bench``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDEGATE_", "ANTHROPIC_"))}
    env |= {
        "CLAUDEGATE_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'claudegate.db'}",
        "CLAUDEGATE_USAGE_SPILL_FILE": str(workdir / "spill.jsonl"),
        "CLAUDEGATE_LOG_LEVEL": "warning",
    }
    created = subprocess.run(
        claudegate("keys", "create", "--org", "bench", "--json"), env=env, capture_output=True, check=True
    )
    return env, json.loads(created.stdout)["key"]


async def amain(args: argparse.Namespace, workdir: Path, env: dict[str, str], key: str) -> dict[str, Any]:
    os.sched_setaffinity(0, {1})
    sim_port, gw_port = free_port(), free_port()
    simulator = Proc(
        "simulator",
        claudegate("simulate", "--port", str(sim_port), "--latency", "none"),
        env,
        "1",
        workdir / "simulator.log",
    )
    gateway_env = env | {
        "CLAUDEGATE_UPSTREAM_URL": f"http://127.0.0.1:{sim_port}",
        "ANTHROPIC_API_KEY": "sk-bench-upstream",
    }
    gateway = Proc(
        "gateway", claudegate("serve", "--port", str(gw_port)), gateway_env, "0", workdir / "gateway.log"
    )
    try:
        await wait_until_up(f"http://127.0.0.1:{sim_port}/v1/models", simulator)
        await wait_until_up(f"http://127.0.0.1:{gw_port}/health", gateway)
        return await measure(args, gateway, f"http://127.0.0.1:{gw_port}/v1/messages", key)
    finally:
        gateway.stop()
        simulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--calls", type=int, default=1000, help="measured calls per phase (default 1000)")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up calls per phase (default 100)")
    parser.add_argument("--reply-tokens", type=int, default=100, help="reply length in tokens (default 100)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cg-cache-") as tmp:
        env, key = prepare(Path(tmp))
        result = asyncio.run(amain(args, Path(tmp), env, key))
    for name, figures in result["median"].items():
        print(f"{name:<13} CPU {figures['cpu_ms']:.3f} ms/call, TTFB p50 {figures['ttfb_p50_ms']:.3f} ms")
    print(
        f"cache hit / pass-through gateway CPU: {result['cache_hit_cpu_ratio']:.2f} "
        f"(target < {TARGET_CACHE_CPU_RATIO}): {result['cache_verdict']}"
    )
    for coding, added in result["added_ttfb_ms"].items():
        print(f"{coding} adds {added:+.3f} ms to stream TTFB p50 (target <= {TARGET_COMPRESSED_TTFB_MS} ms)")
    print(f"compression: {result['compression_verdict']}; errors: {result['errors']}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["errors"] or "FAIL" in (result["cache_verdict"], result["compression_verdict"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
