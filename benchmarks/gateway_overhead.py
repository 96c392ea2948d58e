"""What the gateway costs: direct to the simulator against through the gateway, measured in one run.

Starts a simulator (``claudegate simulate --latency none``) and a gateway in front of it (``claudegate serve``
with every feature on: a real ``cg-`` key checked on every call, usage metered to SQLite, Prometheus
metrics), then drives both with an aiohttp client (keep-alive, a fixed number of calls per phase, warm-up
first) in interleaved rounds: for each scenario (JSON and streaming replies, at concurrency 1 and 20) one
phase straight to the simulator and one through the gateway, the order alternating from round to round.
Reported figures are medians over the rounds, with the direct phase of the same round as the baseline:

- latency p50/p99 (request sent to the last byte read) and, when streaming, time to first byte (request
  sent to the first chunk of the body: ``message_start``), direct and added by the gateway;
- calls per second;
- gateway CPU per call: utime+stime of the gateway process (all its threads, so the SQLite writer thread
  counts too) from ``/proc/PID/stat`` around the measured calls, divided by the calls. Each gateway phase
  waits for the usage writer to flush before and after, so a phase pays for its own records and only those;
- resident memory of the gateway (``VmRSS``): idle after start, and after all the load.

Variants: ``--variant NAME[@EXECUTABLE][:KEY=VALUE,...]`` (repeatable) runs several gateways in the same run,
each measured against the same direct phases, round by round: another checkout's ``claudegate`` (``@PATH``)
and settings in the environment (``:CLAUDEGATE_LOG_LEVEL=info``). A value ``{otlp}`` becomes the URL of an
OTLP/HTTP sink this script serves (for tracing). The first variant is the baseline of a closing comparison
of gateway CPU per call; without ``--variant`` there is one gateway, ``gateway``, as before. E.g.::

    .venv/bin/python benchmarks/gateway_overhead.py --rounds 3 \
        --variant main@/path/to/main/.venv/bin/claudegate --variant quiet \
        --variant access-log:CLAUDEGATE_LOG_LEVEL=info \
        --variant tracing:CLAUDEGATE_OTEL_ENDPOINT={otlp}

Layout (default ``split``, on a 2-core machine): the gateway is pinned to core 0 and the simulator and this
load generator to core 1, so gateway CPU is neither stolen by nor billed to the other processes. ``--layout
none`` leaves scheduling to the kernel.

Run from the repository root::

    .venv/bin/python benchmarks/gateway_overhead.py --json gateway_overhead.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from _processes import Proc, claudegate, free_port, wait_until_up

CLK_TCK = os.sysconf("SC_CLK_TCK")
FLUSH_WAIT_S = 0.8  # the gateway writes usage every 0.5 s (its default); wait that out around each phase
MODEL = "claude-sonnet-4-6"

# Targets (design.md): what the gateway may add at most.
TARGET_CPU_MS = 0.5  # gateway CPU per non-streaming call
TARGET_ADDED_P50_MS = 1.0  # added p50 latency, non-streaming, c=1
TARGET_ADDED_TTFB_MS = 1.0  # added time to first byte, streaming, c=1
TARGET_IDLE_RSS_MB = 100.0  # gateway resident memory, idle after start


@dataclass(frozen=True)
class Scenario:
    stream: bool
    concurrency: int

    @property
    def name(self) -> str:
        return f"{'stream' if self.stream else 'json'} c={self.concurrency}"


@dataclass
class Phase:
    """One measured phase: one scenario, one target, one round."""

    round: int
    target: str  # "direct" or "gateway"
    scenario: str
    calls: int
    wall_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    ttfb_p50_ms: float | None
    ttfb_p99_ms: float | None
    gateway_cpu_ms_per_call: float | None
    simulator_cpu_ms_per_call: float
    client_cpu_ms_per_call: float
    others_cores: float  # CPU other processes used during the calls, in cores (noise on a shared machine)
    others_on_gateway_core: float | None  # the share of the gateway's core they took (split layout)
    errors: int


# -- processes -------------------------------------------------------------------------------------------


# -- load ------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def drive(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    stream: bool,
    calls: int,
    concurrency: int,
) -> tuple[list[float], list[float], int, float]:
    """Make ``calls`` calls from ``concurrency`` workers; latencies and TTFBs (s), errors, wall time."""
    latencies: list[float] = []
    ttfbs: list[float] = []
    errors = 0
    remaining = calls
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            started = clock()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    if stream:
                        first: float | None = None
                        tail = b""
                        async for chunk in response.content.iter_any():
                            if first is None:
                                first = clock()
                            tail = (tail + chunk)[-64:]
                        ok = response.status == 200 and b"message_stop" in tail
                        if first is not None:
                            ttfbs.append(first - started)
                    else:
                        data = await response.read()
                        ok = response.status == 200 and data.endswith(b"}")
            except (aiohttp.ClientError, OSError):
                ok = False
            latencies.append(clock() - started)
            if not ok:
                errors += 1

    began = clock()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, ttfbs, errors, clock() - began


def busy_ticks() -> dict[str, int]:
    """Busy clock ticks of the machine ("cpu") and of each core: user, nice, system and steal time.

    Interrupt time is left out: loopback networking is partly counted there rather than to the processes
    that caused it, and it would look like someone else's load."""
    busy = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu"):
            break
        name, *values = line.split()
        user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(v) for v in values[:8])
        busy[name] = user + nice + system + steal
    return busy


def client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the run ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One gateway measured in the run: a name, the claudegate it runs, and settings in its environment."""

    name: str
    executable: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Variant:
        head, _, settings = text.partition(":")
        name, _, executable = head.partition("@")
        pairs = tuple(tuple(item.split("=", 1)) for item in settings.split(",") if item)
        if not name or any(len(pair) != 2 for pair in pairs) or name == "direct":
            raise argparse.ArgumentTypeError(f"expected NAME[@EXECUTABLE][:KEY=VALUE,...], got {text!r}")
        return cls(name, executable or None, pairs)  # type: ignore[arg-type]


@dataclass
class Run:
    args: argparse.Namespace
    simulator: Proc
    gateways: dict[str, tuple[Proc, str]]  # variant name -> (process, base URL)
    direct_url: str
    key: str
    gateway_calls: int = 0
    phases: list[Phase] = field(default_factory=list)

    @property
    def gateway(self) -> Proc:
        """The first (baseline) gateway."""
        return next(iter(self.gateways.values()))[0]

    def body(self, stream: bool) -> bytes:
        message: dict[str, Any] = {
            "model": MODEL,
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Say something about keeping overhead low."}],
        }
        if stream:
            message["stream"] = True
        return orjson.dumps(message)

    def headers(self, target: str) -> dict[str, str]:
        return {
            "x-api-key": self.key if target != "direct" else "sk-bench-direct",
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
            "x-simulator-reply-tokens": str(self.args.reply_tokens),
            # Plain replies, as the simulator sends them: compression is measured by cache_compression.py.
            "accept-encoding": "identity",
        }

    async def phase(
        self, session: aiohttp.ClientSession, number: int, target: str, scenario: Scenario
    ) -> Phase:
        gateway = self.gateways[target][0] if target != "direct" else self.gateway
        url = (self.gateways[target][1] if target != "direct" else self.direct_url) + "/v1/messages"
        headers, body = self.headers(target), self.body(scenario.stream)
        calls = self.args.calls_c1 if scenario.concurrency == 1 else self.args.calls
        stream, concurrency = scenario.stream, scenario.concurrency
        _, _, warm_errors, _ = await drive(
            session, url, headers, body, stream=stream, calls=self.args.warmup, concurrency=concurrency
        )
        if target != "direct":
            self.gateway_calls += self.args.warmup + calls
        await asyncio.sleep(FLUSH_WAIT_S)  # warm-up records written before the measured window opens
        gateway_before, simulator_before, client_before = (
            gateway.cpu_ticks(),
            self.simulator.cpu_ticks(),
            client_cpu_s(),
        )
        busy_before = busy_ticks()
        latencies, ttfbs, errors, wall = await drive(
            session, url, headers, body, stream=stream, calls=calls, concurrency=concurrency
        )
        client_after, busy_after = client_cpu_s(), busy_ticks()
        gateway_during, simulator_during = gateway.cpu_ticks(), self.simulator.cpu_ticks()
        await asyncio.sleep(FLUSH_WAIT_S)  # and this phase's records before it closes
        gateway_ms = (gateway.cpu_ticks() - gateway_before) * 1000 / CLK_TCK / calls
        simulator_ms = (self.simulator.cpu_ticks() - simulator_before) * 1000 / CLK_TCK / calls
        ours = (gateway_during - gateway_before + simulator_during - simulator_before) / CLK_TCK
        ours += client_after - client_before
        others = max(0.0, ((busy_after["cpu"] - busy_before["cpu"]) / CLK_TCK - ours) / wall)
        on_gateway_core = None
        if self.args.layout == "split" and target != "direct":
            core = (busy_after["cpu0"] - busy_before["cpu0"] - (gateway_during - gateway_before)) / CLK_TCK
            on_gateway_core = max(0.0, core / wall)
        return Phase(
            round=number,
            target=target,
            scenario=scenario.name,
            calls=calls,
            wall_s=wall,
            rps=calls / wall,
            p50_ms=percentile(latencies, 50) * 1000,
            p99_ms=percentile(latencies, 99) * 1000,
            ttfb_p50_ms=percentile(ttfbs, 50) * 1000 if ttfbs else None,
            ttfb_p99_ms=percentile(ttfbs, 99) * 1000 if ttfbs else None,
            gateway_cpu_ms_per_call=gateway_ms if target != "direct" else None,
            simulator_cpu_ms_per_call=simulator_ms,
            client_cpu_ms_per_call=(client_after - client_before) * 1000 / calls,
            others_cores=others,
            others_on_gateway_core=on_gateway_core,
            errors=errors + warm_errors,
        )


async def run_rounds(run: Run, scenarios: list[Scenario]) -> dict[str, float]:
    """The interleaved rounds; returns the gateway's memory and idle CPU figures."""
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120), auto_decompress=False
    ) as session:
        await asyncio.sleep(1.0)
        idle_before = run.gateway.cpu_ticks()
        await asyncio.sleep(2.0)
        idle_cpu_ms_per_s = (run.gateway.cpu_ticks() - idle_before) * 1000 / CLK_TCK / 2.0
        memory = {"idle_rss_mb": run.gateway.memory_mb(), "idle_cpu_ms_per_s": idle_cpu_ms_per_s}
        targets = ["direct", *run.gateways]
        for number in range(1, run.args.rounds + 1):
            shift = (number - 1) % len(targets)
            order = targets[shift:] + targets[:shift]  # each target goes first in turn
            for scenario in scenarios:
                for target in order:
                    phase = await run.phase(session, number, target, scenario)
                    run.phases.append(phase)
                    cpu = (
                        f" gw-cpu={phase.gateway_cpu_ms_per_call:.3f}ms"
                        if phase.gateway_cpu_ms_per_call is not None
                        else ""
                    )
                    ttfb = f" ttfb50={phase.ttfb_p50_ms:.3f}ms" if phase.ttfb_p50_ms is not None else ""
                    print(
                        f"  round {number} {scenario.name:<10} {target:<10} {phase.rps:7.0f}/s "
                        f"p50={phase.p50_ms:.3f}ms p99={phase.p99_ms:.3f}ms{ttfb}{cpu}"
                        f" client-cpu={phase.client_cpu_ms_per_call:.3f}ms others={phase.others_cores:.2f}"
                        + (f" ERRORS={phase.errors}" if phase.errors else ""),
                        file=sys.stderr,
                        flush=True,
                    )
        for name, (proc, _url) in run.gateways.items():
            memory[f"{name}:loaded_rss_mb"] = proc.memory_mb()
        memory["loaded_rss_mb"] = run.gateway.memory_mb()
        memory["peak_rss_mb"] = run.gateway.memory_mb("VmHWM")
        memory["threads"] = run.gateway.threads()
    return memory


# -- summary ---------------------------------------------------------------------------------------------


def compare_variants(
    phases: list[Phase], scenarios: list[Scenario], names: list[str]
) -> list[dict[str, Any]]:
    """Gateway CPU per call of each variant against the first, as the median over rounds of the ratio within
    a round (the same machine load for both)."""
    rows = []
    for scenario in scenarios:
        for name in names:
            ratios, values = [], []
            for number in sorted({p.round for p in phases}):
                cpu = {
                    p.target: p.gateway_cpu_ms_per_call
                    for p in phases
                    if p.round == number and p.scenario == scenario.name
                }
                if cpu.get(name) is not None:
                    values.append(cpu[name])
                    if cpu.get(names[0]):
                        ratios.append(cpu[name] / cpu[names[0]])
            rows.append(
                {
                    "scenario": scenario.name,
                    "variant": name,
                    "gateway_cpu_ms_per_call": statistics.median(values) if values else None,
                    "ratio_to_first": statistics.median(ratios) if ratios else None,
                }
            )
    return rows


def comparison_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "",
        "",
        "### gateway CPU per call, each variant against the first (median of per-round ratios)",
        "",
    ]
    lines += ["| scenario | variant | gateway CPU ms/call | ratio |", "|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['scenario']} | {row['variant']} | {_cell(row['gateway_cpu_ms_per_call'])} | "
            f"{_cell(row['ratio_to_first'], True)} |"
        )
    return "\n".join(lines)


def median_of(phases: list[Phase], target: str, scenario: str, attribute: str) -> float | None:
    values = [
        getattr(p, attribute)
        for p in phases
        if p.target == target and p.scenario == scenario and getattr(p, attribute) is not None
    ]
    return statistics.median(values) if values else None


def paired_added(phases: list[Phase], scenario: str, attribute: str) -> float | None:
    """Median over rounds of (gateway - direct) within the same round."""
    added = []
    for number in sorted({p.round for p in phases}):
        pair = {
            p.target: getattr(p, attribute) for p in phases if p.round == number and p.scenario == scenario
        }
        if pair.get("gateway") is not None and pair.get("direct") is not None:
            added.append(pair["gateway"] - pair["direct"])
    return statistics.median(added) if added else None


def paired_ratio(phases: list[Phase], scenario: str, attribute: str) -> float | None:
    ratios = []
    for number in sorted({p.round for p in phases}):
        pair = {
            p.target: getattr(p, attribute) for p in phases if p.round == number and p.scenario == scenario
        }
        if pair.get("gateway") is not None and pair.get("direct"):
            ratios.append(pair["gateway"] / pair["direct"])
    return statistics.median(ratios) if ratios else None


@dataclass
class Row:
    metric: str
    direct: float | None
    gateway: float | None
    added: float | None
    ratio: float | None
    target: str = ""
    verdict: str = ""


def summarise(phases: list[Phase], scenarios: list[Scenario], memory: dict[str, float]) -> list[Row]:
    rows: list[Row] = []
    for scenario in scenarios:
        s = scenario.name
        metrics = [("p50_ms", "latency p50 ms"), ("p99_ms", "latency p99 ms")]
        if scenario.stream:
            metrics += [("ttfb_p50_ms", "TTFB p50 ms"), ("ttfb_p99_ms", "TTFB p99 ms")]
        for attribute, label in metrics:
            row = Row(
                f"{s}: {label}",
                median_of(phases, "direct", s, attribute),
                median_of(phases, "gateway", s, attribute),
                paired_added(phases, s, attribute),
                paired_ratio(phases, s, attribute),
            )
            if scenario.concurrency == 1 and attribute == "p50_ms" and not scenario.stream:
                row.target, row.verdict = (
                    f"added <= {TARGET_ADDED_P50_MS} ms",
                    _verdict(row.added, TARGET_ADDED_P50_MS),
                )
            if scenario.concurrency == 1 and attribute == "ttfb_p50_ms":
                row.target, row.verdict = (
                    f"added <= {TARGET_ADDED_TTFB_MS} ms",
                    _verdict(row.added, TARGET_ADDED_TTFB_MS),
                )
            rows.append(row)
        rows.append(
            Row(
                f"{s}: calls/s",
                median_of(phases, "direct", s, "rps"),
                median_of(phases, "gateway", s, "rps"),
                paired_added(phases, s, "rps"),
                paired_ratio(phases, s, "rps"),
            )
        )
        # CPU: the direct column is the simulator's own CPU per call (the upstream's work, as a yardstick).
        gateway_cpu = median_of(phases, "gateway", s, "gateway_cpu_ms_per_call")
        simulator_cpu = median_of(phases, "direct", s, "simulator_cpu_ms_per_call")
        row = Row(
            f"{s}: gateway CPU ms/call (direct: simulator's)",
            simulator_cpu,
            gateway_cpu,
            gateway_cpu,
            gateway_cpu / simulator_cpu if gateway_cpu is not None and simulator_cpu else None,
        )
        if not scenario.stream:
            row.target, row.verdict = f"<= {TARGET_CPU_MS} ms", _verdict(gateway_cpu, TARGET_CPU_MS)
        rows.append(row)
    rows.append(
        Row(
            "gateway RSS MB, idle after start",
            None,
            memory["idle_rss_mb"],
            None,
            None,
            f"< {TARGET_IDLE_RSS_MB:.0f} MB",
            _verdict(memory["idle_rss_mb"], TARGET_IDLE_RSS_MB),
        )
    )
    rows.append(Row("gateway RSS MB, after the load", None, memory["loaded_rss_mb"], None, None))
    rows.append(Row("gateway peak RSS MB (VmHWM)", None, memory["peak_rss_mb"], None, None))
    return rows


def _verdict(value: float | None, limit: float) -> str:
    if value is None:
        return "n/a"
    return "PASS" if value <= limit else "FAIL"


def _cell(value: float | None, ratio: bool = False) -> str:
    if value is None:
        return "-"
    if ratio:
        return f"{value:.2f}x"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def table(rows: list[Row]) -> str:
    header = ("metric", "direct", "gateway", "added", "ratio", "target", "result")
    body = [
        (
            r.metric,
            _cell(r.direct),
            _cell(r.gateway),
            _cell(r.added),
            _cell(r.ratio, True),
            r.target,
            r.verdict,
        )
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in body
    ]
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def processes(
    args: argparse.Namespace, workdir: Path, otlp_url: str
) -> Iterator[tuple[Proc, dict[str, tuple[Proc, str]], str, int]]:
    split = args.layout == "split"
    if split:
        os.sched_setaffinity(0, {1})  # the load generator shares core 1 with the simulator
    database = f"sqlite+aiosqlite:///{workdir / 'claudegate.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDEGATE_", "ANTHROPIC_"))}
    env |= {
        "CLAUDEGATE_DATABASE_URL": database,
        "CLAUDEGATE_USAGE_SPILL_FILE": str(workdir / "spill.jsonl"),
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
    gateway_env = env | {
        "CLAUDEGATE_UPSTREAM_URL": f"http://127.0.0.1:{sim_port}",
        "ANTHROPIC_API_KEY": "sk-bench-upstream",
    }
    gateways: dict[str, tuple[Proc, str]] = {}
    try:
        for variant in args.variant or [Variant("gateway")]:
            port = free_port()
            argv = claudegate("serve", "--port", str(port))
            if variant.executable is not None:
                argv = [variant.executable, "serve", "--port", str(port)]
            settings = {key: value.replace("{otlp}", otlp_url) for key, value in variant.env}
            proc = Proc(
                variant.name,
                argv,
                gateway_env
                | {"CLAUDEGATE_USAGE_SPILL_FILE": str(workdir / f"spill-{variant.name}.jsonl")}
                | settings,
                "0" if split else None,
                workdir / f"gateway-{variant.name}.log",
            )
            gateways[variant.name] = (proc, f"http://127.0.0.1:{port}")
        yield simulator, gateways, key, sim_port
    finally:
        for proc, _url in gateways.values():
            proc.stop()
        simulator.stop()


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    scenarios = [Scenario(stream, c) for stream in (False, True) for c in args.concurrency]
    with tempfile.TemporaryDirectory(prefix="cg-overhead-") as tmp:
        workdir = Path(tmp)
        async with otlp_sink() as otlp_url:
            with processes(args, workdir, otlp_url) as (simulator, gateways, key, sim_port):
                await wait_until_up(f"http://127.0.0.1:{sim_port}/v1/models", simulator)
                for proc, url in gateways.values():
                    await wait_until_up(f"{url}/health", proc)
                run = Run(args, simulator, gateways, f"http://127.0.0.1:{sim_port}", key)
                print(
                    f"simulator pid {simulator.pid}, gateways "
                    + ", ".join(f"{name} pid {proc.pid}" for name, (proc, _url) in gateways.items())
                    + f" (layout {args.layout}); {args.rounds} rounds",
                    file=sys.stderr,
                )
                memory = await run_rounds(run, scenarios)
        with contextlib.closing(sqlite3.connect(workdir / "claudegate.db")) as db:
            recorded = int(db.execute("SELECT count(*) FROM usage_records").fetchone()[0])
    tables = []
    for name in run.gateways:
        kept = [p for p in run.phases if p.target in ("direct", name)]
        renamed = [
            Phase(**{**asdict(p), "target": "gateway" if p.target == name else p.target}) for p in kept
        ]
        variant_memory = memory | {"loaded_rss_mb": memory[f"{name}:loaded_rss_mb"]}
        rows = summarise(renamed, scenarios, variant_memory)
        tables.append((name, rows))
    comparison = compare_variants(run.phases, scenarios, list(run.gateways))
    errors = sum(p.errors for p in run.phases)
    on_core = [p.others_on_gateway_core for p in run.phases if p.others_on_gateway_core is not None]
    noise = {
        "others_cores_median": statistics.median(p.others_cores for p in run.phases),
        "others_on_gateway_core_median": statistics.median(on_core) if on_core else None,
        "lowest_gateway_cpu_ms_per_call": {
            s.name: min(
                p.gateway_cpu_ms_per_call
                for p in run.phases
                if p.scenario == s.name and p.gateway_cpu_ms_per_call is not None
            )
            for s in scenarios
        },
    }
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "layout": args.layout,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "variant")}
        | {"variant": [asdict(variant) for variant in args.variant or []]},
        "usage_records": {"expected": run.gateway_calls, "written": recorded},
        "errors": errors,
        "memory": memory,
        "noise": noise,
        "rows": {name: [asdict(r) for r in rows] for name, rows in tables},
        "phases": [asdict(p) for p in run.phases],
        "comparison": comparison,
        "table": "\n\n".join(
            (f"### {name}\n\n" if len(tables) > 1 else "") + table(rows) for name, rows in tables
        )
        + (comparison_table(comparison) if len(tables) > 1 else ""),
    }


@contextlib.asynccontextmanager
async def otlp_sink() -> AsyncIterator[str]:
    """An OTLP/HTTP endpoint that accepts spans and keeps nothing, for variants that trace."""
    from aiohttp import web

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--calls", type=int, default=3000, help="measured calls per c>1 phase (default 3000)")
    parser.add_argument(
        "--calls-c1", type=int, default=1500, help="measured calls per c=1 phase (default 1500)"
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
    parser.add_argument(
        "--variant",
        type=Variant.parse,
        action="append",
        help="a gateway to measure: NAME[@EXECUTABLE][:KEY=VALUE,...] (repeatable; see the module's doc)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args()
    if args.layout == "split" and (os.cpu_count() or 1) < 2:
        parser.error("--layout split needs two cores; use --layout none")
    run: Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run = uvloop.run
    result = run(amain(args))
    print(result["table"])
    usage = result["usage_records"]
    print(
        f"\nusage records written: {usage['written']} for {usage['expected']} gateway calls; "
        f"errors: {result['errors']}; gateway idle CPU {result['memory']['idle_cpu_ms_per_s']:.2f} ms/s; "
        f"threads {result['memory']['threads']:.0f}"
    )
    noise = result["noise"]
    on_core = noise["others_on_gateway_core_median"]
    print(
        f"noise: other processes used a median {noise['others_cores_median']:.2f} cores during measured calls"
        + (f" ({on_core:.0%} of the gateway's core)" if on_core is not None else "")
        + "; lowest gateway CPU ms/call of any round: "
        + ", ".join(f"{name} {value:.3f}" for name, value in noise["lowest_gateway_cpu_ms_per_call"].items())
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["errors"] or usage["written"] != usage["expected"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
