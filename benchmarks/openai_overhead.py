"""What translating OpenAI's Chat Completions costs: the gateway's CPU per call on ``/v1/chat/completions``
beside its CPU per call on ``/v1/messages``, measured in one run against one gateway.

Starts a simulator (``claudegate simulate --latency none``) and a gateway in front of it, as
``gateway_overhead.py`` does (same layout: gateway on core 0, simulator and this load generator on core 1),
then drives the gateway in interleaved rounds: for each scenario (JSON and streaming replies, at
concurrency 1 and 20) one phase of native calls (``/v1/messages``) and one of the same request in OpenAI's
form (``/v1/chat/completions``; streams with ``stream_options.include_usage``), the order alternating from
round to round. Both ask for the same model, prompt, ``max_tokens`` and reply length, so the gateway's extra
work on the OpenAI side is the translation: the request (and its cache breakpoints), the reply or each stream
event, and usage in OpenAI's shape.

Reported per scenario, as medians over the rounds: gateway CPU per call (utime+stime of the gateway process
from ``/proc/PID/stat``, usage records flushed inside each phase's window), latency p50, and the OpenAI/native
ratio of the same round. Target: the translated path costs at most 1.5× the native path's CPU per call.

Run from the repository root::

    .venv/bin/python benchmarks/openai_overhead.py --json openai_overhead.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from _processes import Proc
from gateway_overhead import CLK_TCK, FLUSH_WAIT_S, percentile, processes, wait_until_up

MODEL = "claude-sonnet-4-6"
PROMPT = "Say something about keeping overhead low."
TARGET_RATIO = 1.5
# What ends a complete stream of each API.
STREAM_END = {"native": b"message_stop", "openai": b"data: [DONE]"}


@dataclass
class Phase:
    round: int
    api: str  # "native" or "openai"
    scenario: str
    calls: int
    p50_ms: float
    cpu_ms_per_call: float
    errors: int


def request(api: str, stream: bool) -> tuple[str, bytes]:
    """The path and body of one call: the same request in each API's form."""
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    if stream:
        body["stream"] = True
        if api == "openai":
            body["stream_options"] = {"include_usage": True}
    return ("/v1/messages" if api == "native" else "/v1/chat/completions"), orjson.dumps(body)


async def drive(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    end: bytes | None,
    calls: int,
    concurrency: int,
) -> tuple[list[float], int]:
    """``calls`` calls from ``concurrency`` workers; their latencies (s) and how many failed."""
    latencies: list[float] = []
    errors = 0
    remaining = calls

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    data = await response.read()
                    ok = response.status == 200 and (end in data[-200:] if end else data.endswith(b"}"))
            except (aiohttp.ClientError, OSError):
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


async def phase(
    session: aiohttp.ClientSession,
    args: argparse.Namespace,
    gateway: Proc,
    base_url: str,
    key: str,
    number: int,
    api: str,
    stream: bool,
    concurrency: int,
) -> Phase:
    path, body = request(api, stream)
    headers = {
        "authorization": f"Bearer {key}",
        "content-type": "application/json",
        "x-simulator-reply-tokens": str(args.reply_tokens),
    }
    if api == "native":
        headers["anthropic-version"] = "2023-06-01"
    calls = args.calls_c1 if concurrency == 1 else args.calls
    end = STREAM_END[api] if stream else None
    _, warm_errors = await drive(
        session, base_url + path, headers, body, end=end, calls=args.warmup, concurrency=concurrency
    )
    await asyncio.sleep(FLUSH_WAIT_S)  # warm-up records written before the measured window opens
    before = gateway.cpu_ticks()
    latencies, errors = await drive(
        session, base_url + path, headers, body, end=end, calls=calls, concurrency=concurrency
    )
    await asyncio.sleep(FLUSH_WAIT_S)  # and this phase's records before it closes
    cpu_ms = (gateway.cpu_ticks() - before) * 1000 / CLK_TCK / calls
    return Phase(
        round=number,
        api=api,
        scenario=f"{'stream' if stream else 'json'} c={concurrency}",
        calls=calls,
        p50_ms=percentile(latencies, 50) * 1000,
        cpu_ms_per_call=cpu_ms,
        errors=errors + warm_errors,
    )


def summarise(phases: list[Phase]) -> list[dict[str, Any]]:
    rows = []
    for scenario in dict.fromkeys(p.scenario for p in phases):
        pairs: dict[int, dict[str, Phase]] = {}
        for p in phases:
            if p.scenario == scenario:
                pairs.setdefault(p.round, {})[p.api] = p
        ratios = [pair["openai"].cpu_ms_per_call / pair["native"].cpu_ms_per_call for pair in pairs.values()]
        native = statistics.median(pair["native"].cpu_ms_per_call for pair in pairs.values())
        openai = statistics.median(pair["openai"].cpu_ms_per_call for pair in pairs.values())
        ratio = statistics.median(ratios)
        rows.append(
            {
                "scenario": scenario,
                "native_cpu_ms": native,
                "openai_cpu_ms": openai,
                "ratio": ratio,
                "native_p50_ms": statistics.median(pair["native"].p50_ms for pair in pairs.values()),
                "openai_p50_ms": statistics.median(pair["openai"].p50_ms for pair in pairs.values()),
                "result": "PASS" if ratio <= TARGET_RATIO else "FAIL",
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | native CPU ms/call | OpenAI CPU ms/call | ratio | native p50 ms | OpenAI p50 ms | "
        f"target ≤ {TARGET_RATIO}× |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['scenario']} | {r['native_cpu_ms']:.3f} | {r['openai_cpu_ms']:.3f} | {r['ratio']:.2f}× | "
        f"{r['native_p50_ms']:.3f} | {r['openai_p50_ms']:.3f} | {r['result']} |"
        for r in rows
    ]
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    phases: list[Phase] = []
    with (
        tempfile.TemporaryDirectory(prefix="cg-openai-") as tmp,
        processes(args, Path(tmp)) as (
            simulator,
            gateway,
            key,
            sim_port,
            gw_port,
        ),
    ):
        await wait_until_up(f"http://127.0.0.1:{sim_port}/v1/models", simulator)
        await wait_until_up(f"http://127.0.0.1:{gw_port}/health", gateway)
        base_url = f"http://127.0.0.1:{gw_port}"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=120)
        ) as session:
            for number in range(1, args.rounds + 1):
                order = ("native", "openai") if number % 2 else ("openai", "native")
                for stream in (False, True):
                    for concurrency in args.concurrency:
                        for api in order:
                            done = await phase(
                                session, args, gateway, base_url, key, number, api, stream, concurrency
                            )
                            phases.append(done)
                            print(
                                f"  round {number} {done.scenario:<10} {api:<6} "
                                f"cpu={done.cpu_ms_per_call:.3f}ms p50={done.p50_ms:.3f}ms"
                                + (f" ERRORS={done.errors}" if done.errors else ""),
                                file=sys.stderr,
                                flush=True,
                            )
    rows = summarise(phases)
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "errors": sum(p.errors for p in phases),
        "rows": rows,
        "phases": [asdict(p) for p in phases],
        "table": table(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per c>1 phase (default 2000)")
    parser.add_argument(
        "--calls-c1", type=int, default=1000, help="measured calls per c=1 phase (default 1000)"
    )
    parser.add_argument(
        "--warmup", type=int, default=200, help="warm-up calls before each phase (default 200)"
    )
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 20], help="concurrency levels (default 1 20)"
    )
    parser.add_argument("--reply-tokens", type=int, default=100, help="reply length in tokens (default 100)")
    parser.add_argument(
        "--layout",
        choices=("split", "none"),
        default="split",
        help="split: gateway on core 0, simulator and load generator on core 1; none: no pinning",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args()
    if args.layout == "split" and (os.cpu_count() or 1) < 2:
        parser.error("--layout split needs two cores; use --layout none")
    result = asyncio.run(amain(args))
    print(result["table"])
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["errors"]:
        print(f"errors: {result['errors']}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
