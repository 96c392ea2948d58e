"""Requests per second of the simulator on one core, against a minimal ASGI app measured in the same run.

    python benchmarks/simulator_rps.py [--requests 10000] [--concurrency 20] [--rounds 5] [--json out.json]

The servers run as subprocesses pinned to core 0 (``taskset -c 0``): ``claudegate simulate --latency none``,
and a baseline, a raw-ASGI app under uvicorn with the same loop and HTTP parser (uvloop, httptools) that
reads the same POST and answers a fixed small JSON body. This script is the load generator, pinned to core 1:
an aiohttp client with N concurrent keep-alive connections sends a fixed number of requests after a warm-up.
Rounds interleave the scenarios so that drift in the machine hits them all alike; the table shows the median
round. Server CPU per request comes from the server process's own CPU time (/proc/PID/stat), so it does not
depend on whether the load generator or the server is the bottleneck, nor much on other load on the machine;
requests per second do, so the load average is reported with them.

Scenarios:
  baseline            the minimal app (the floor: uvicorn + httptools + uvloop + the client)
  simulator           POST /v1/messages, JSON reply of 50 tokens, the same body every time
  simulator-stream    the same with "stream": true (18 SSE events)
  simulator-distinct  a different body every time: no help from the simulator's prepared-request cache
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SERVER_CORE = 0
CLIENT_CORE = 1
REPLY_TOKENS = 50
BASELINE_BODY = b'{"type":"message","content":[{"type":"text","text":"hello"}]}'
HEADERS = {
    "x-api-key": "bench-key",
    "anthropic-version": "2023-06-01",
    "content-type": "application/json",
    "x-simulator-reply-tokens": str(REPLY_TOKENS),
}
STREAM_END = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
SCENARIOS = ("baseline", "simulator", "simulator-stream", "simulator-distinct")


def request_body(index: int | None, *, stream: bool) -> bytes:
    """The Messages request every scenario sends; ``index`` makes each body different."""
    content = "Hello, simulator! How are you today?" + (f" (request {index})" if index is not None else "")
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": content}],
    }
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


# -- the baseline server --------------------------------------------------------------------------------


async def baseline_app(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
    """The least an ASGI app can do for this POST: read the body, answer a fixed JSON body."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BASELINE_BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BASELINE_BODY})


def serve_baseline(port: int) -> None:
    import uvicorn

    uvicorn.run(
        baseline_app,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


# -- running servers --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


@contextlib.contextmanager
def server(kind: str) -> Iterator[tuple[int, int]]:
    """Start a server pinned to the server core; yield (port, pid)."""
    port = free_port()
    if kind == "baseline":
        command = [sys.executable, str(Path(__file__).resolve()), "--serve-baseline", str(port)]
    else:
        command = [sys.executable, "-m", "claudegate", "simulate", "--host", "127.0.0.1", "--port", str(port),
                   "--latency", "none"]  # fmt: skip
    process = subprocess.Popen(
        ["taskset", "-c", str(SERVER_CORE), *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, process)
        yield port, process.pid  # taskset execs the command: same pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the load generator --------------------------------------------------------------------------------------


@dataclass
class Round:
    scenario: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms_per_request: float
    server_cpu_share: float  # of one core, during the round
    client_cpu_share: float  # the load generator's: near 100% means the client, not the server, is the limit
    errors: int


async def drive(
    port: int, scenario: str, count: int, concurrency: int, *, offset: int
) -> tuple[float, list[float], int]:
    """Send ``count`` requests over ``concurrency`` connections; return elapsed seconds, latencies, errors."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/messages"
    stream = scenario == "simulator-stream"
    distinct = scenario == "simulator-distinct"
    fixed = request_body(None, stream=stream)
    latencies: list[float] = []
    errors = 0
    next_index = 0

    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < count:
                index = next_index
                next_index += 1
                body = request_body(offset + index, stream=False) if distinct else fixed
                started = time.perf_counter()
                async with session.post(url, data=body) as response:
                    payload = await response.read()
                latencies.append(time.perf_counter() - started)
                if response.status != 200 or not payload.endswith(STREAM_END if stream else b"}"):
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, errors


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run_round(port: int, pid: int, scenario: str, args: argparse.Namespace, offset: int) -> Round:
    asyncio.run(drive(port, scenario, args.warmup, args.concurrency, offset=offset + 10_000_000))
    cpu_before, client_before = cpu_seconds(pid), time.process_time()
    elapsed, latencies, errors = asyncio.run(
        drive(port, scenario, args.requests, args.concurrency, offset=offset)
    )
    cpu, client_cpu = cpu_seconds(pid) - cpu_before, time.process_time() - client_before
    return Round(
        scenario=scenario,
        requests=args.requests,
        seconds=round(elapsed, 3),
        rps=round(args.requests / elapsed, 1),
        p50_ms=round(percentile(latencies, 0.50) * 1000, 3),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 3),
        server_cpu_ms_per_request=round(cpu * 1000 / args.requests, 4),
        server_cpu_share=round(cpu / elapsed, 3),
        client_cpu_share=round(client_cpu / elapsed, 3),
        errors=errors,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=10_000, help="measured requests per scenario and round"
    )
    parser.add_argument("--warmup", type=int, default=1_000, help="requests sent before each measurement")
    parser.add_argument("--concurrency", type=int, default=20, help="concurrent keep-alive connections")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    parser.add_argument("--json", type=Path, help="also write every round and the summary to this file")
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return
    if len(os.sched_getaffinity(0) | {SERVER_CORE, CLIENT_CORE}) < 2 or os.cpu_count() in (None, 1):
        sys.exit("needs two cores: the servers run on core 0, the load generator on core 1")
    os.sched_setaffinity(0, {CLIENT_CORE})  # what `taskset -c 1` does, for this process

    rounds: list[Round] = []
    load_before = os.getloadavg()[0]
    with server("baseline") as (base_port, base_pid), server("simulator") as (sim_port, sim_pid):
        for number in range(args.rounds):
            for scenario in SCENARIOS:
                port, pid = (base_port, base_pid) if scenario == "baseline" else (sim_port, sim_pid)
                result = run_round(port, pid, scenario, args, offset=number * (args.requests + args.warmup))
                rounds.append(result)
                print(f"round {number + 1}: {scenario:<19} {result.rps:>9,.0f} rps", file=sys.stderr)

    load = (round(load_before, 2), round(os.getloadavg()[0], 2))
    summary = summarise(rounds)
    print_table(summary, args, load)
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ("json", "serve_baseline")}
        machine = {
            "cpus": os.cpu_count(),
            "load_average_1m_before_after": load,
            "python": sys.version.split()[0],
        }
        report = {
            "settings": settings,
            "machine": machine,
            "summary": summary,
            "rounds": [asdict(r) for r in rounds],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def summarise(rounds: list[Round]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for scenario in SCENARIOS:
        mine = [r for r in rounds if r.scenario == scenario]
        rows.append({
            "scenario": scenario,
            "rps": statistics.median(r.rps for r in mine),
            "p50_ms": statistics.median(r.p50_ms for r in mine),
            "p99_ms": statistics.median(r.p99_ms for r in mine),
            "server_cpu_ms_per_request": statistics.median(r.server_cpu_ms_per_request for r in mine),
            "server_cpu_share": statistics.median(r.server_cpu_share for r in mine),
            "client_cpu_share": statistics.median(r.client_cpu_share for r in mine),
            "errors": sum(r.errors for r in mine),
        })  # fmt: skip
    base = rows[0]
    for row in rows:
        row["rps_vs_baseline"] = round(row["rps"] / base["rps"], 3)
        row["cpu_vs_baseline"] = round(
            row["server_cpu_ms_per_request"] / base["server_cpu_ms_per_request"], 2
        )
    return rows


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace, load: tuple[float, float]) -> None:
    print(
        f"\n{args.requests:,} requests x {args.rounds} rounds, concurrency {args.concurrency}, "
        f"server on core {SERVER_CORE}, load generator on core {CLIENT_CORE}; medians of rounds; "
        f"load average {load[0]} before, {load[1]} after\n"
    )
    header = (f"{'scenario':<19} {'rps':>9} {'vs base':>8} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'CPU ms/req':>11} {'vs base':>8} {'srv busy':>9} {'cli busy':>9} {'errors':>7}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['scenario']:<19} {row['rps']:>9,.0f} {row['rps_vs_baseline']:>8.2f} {row['p50_ms']:>8.2f} "
            f"{row['p99_ms']:>8.2f} {row['server_cpu_ms_per_request']:>11.3f} {row['cpu_vs_baseline']:>8.2f} "
            f"{row['server_cpu_share']:>9.0%} {row['client_cpu_share']:>9.0%} {row['errors']:>7}"
        )


if __name__ == "__main__":
    main()
