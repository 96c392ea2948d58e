"""Flow control under a burst and sustained overload: the gateway against the plain SDK, in one run.

Two arms, each against a fresh simulator (``claudegate simulate --tier 1 --latency realistic``, restarted
per arm, with a distinct upstream API key per arm, so both start with full buckets):

- **gateway**: the official ``anthropic`` SDK (``max_retries=0``) calls ``claudegate serve`` in front of the
  simulator, every call with ``x-claudegate-deadline-ms`` (default 10 s). A call the gateway refuses
  (its 429 with ``x-claudegate-origin: gateway``) is given up, except for a sample of probes (below).
- **sdk**: the same SDK with its defaults (``max_retries=2``, honouring ``retry-after``) calls the simulator
  directly. The SDK has no deadline; the same deadline is applied when the results are scored.

Both arms get the same load, drawn from ``--seed``: a **burst** of ``--burst`` calls at once, then, after
``--burst-phase-s`` seconds, **sustained overload** for ``--overload-s`` seconds: Poisson arrivals at
``--overload-factor`` times the tier's requests per minute. Every call is a non-streaming ``/v1/messages``
call to Sonnet 4.5 with a prompt of varied length and a reply length drawn from a log-normal distribution
(``x-simulator-reply-tokens``, median ``--reply-median``, at most ``--reply-max``), so output tokens per
minute is the limit that binds at tier 1 (8,000 OTPM against 50 RPM).

What is measured, per arm:

- **429s from upstream**: the simulator's ledger (``GET /_simulator/ledger``), which lists every request
  that reached it with its status and tokens. The gateway's target is zero.
- **Calls answered within the deadline**: a non-streaming reply arrives all at once, so its start (which is
  what the gateway's deadline bounds) is its end: a call is in time when its 200 arrived within the
  deadline. "Admitted" calls are those the gateway did not refuse (gateway arm) or that eventually
  succeeded (sdk arm). Target for the gateway: 100%.
- **The predicted wait of refused calls** (gateway arm): every ``--probe-every``-th refusal whose
  ``retry-after`` leaves time to come back and be answered before the run ends becomes a
  *retry-after probe*: it is sent again right after its ``retry-after`` (fresh deadline), and again after each
  new ``retry-after`` until admitted (at most ``--probe-attempts`` tries). Its wait until admission is the
  time from the refusal to the moment the admitted attempt reached the simulator (the ledger's
  ``received_at``; the ledger is polled every ``--ledger-poll-s``); the ratio to the first ``retry-after`` is
  reported (target: within 20%). A refused caller can start no sooner than it is told, so this ratio
  cannot show a ``retry-after`` that is too long; the table therefore also compares each overload probe's
  ``retry-after`` with the wait the same refusal stated for the queue (``predicted wait of X s``, the
  gateway's expected wait had the call queued instead). A *queue probe* (at most one at a time,
  ``--queue-probes`` in all; a diagnostic, not a target) measures that stated wait: the refused call is
  sent again at once with a deadline long enough to wait its turn (the predicted wait plus twice the
  deadline: room for its reply and for the gateway's margin for kept turns), and its actual start is
  compared with the stated wait. It is an expectation: how long the replies in flight and ahead will run
  is not known until they end (one reply more or less than expected is seconds of output at tier 1), so
  single probes scatter around it. For the sdk arm the same ratio is computed for the SDK's own retries
  (first ``retry-after`` against the time until the attempt that succeeded), from an httpx event hook.
- **Use of the account's capacity under sustained overload**: requests and input/output tokens the
  simulator admitted per minute over the steady part of the overload (from ``--settle-s`` after it began
  to its end), as a share of the tier's RPM, ITPM and OTPM (target: at least 95% of whichever binds).
- Latency p50/p90/p99 of successful calls, and how long an error answer (a refusal, or a 429 after the
  SDK's retries) takes to come back.

Layout (on a 2-core machine): the gateway is pinned to core 0, the simulator and this load generator to
core 1. The full run takes about 6 minutes; ``--quick`` runs a shorter version (about 3 minutes in all)
for a look, but its 30 s capacity window is too short to judge the 95% target. One call's reply is about
2% of a 90 s window's output at tier 1, so a single run's share of the binding limit moves by a few points
with which replies fall in the window: ``--repeat N`` runs everything N times (seeds ``--seed`` to
``--seed`` + N - 1, a fresh simulator each), prints each run's table, then the share in each run with its
mean, judged against the same 95% target (the share over N windows), and the 429s and late calls of all
runs together.

Run from the repository root::

    .venv/bin/python benchmarks/flow_overload.py --json flow_overload.json
    .venv/bin/python benchmarks/flow_overload.py --quick
    .venv/bin/python benchmarks/flow_overload.py --arms gateway --repeat 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import httpx2

from _processes import Proc, claudegate, free_port, wait_until_up
from claudegate.wire.tiers import limits_for

MODEL = "claude-sonnet-4-6"
RATE_CLASS = "sonnet-4"
DEADLINE_HEADER = "x-claudegate-deadline-ms"
CALL_HEADER = "x-bench-call"
UPSTREAM_KEYS = {"gateway": "sk-bench-flow-gw01", "sdk": "sk-bench-flow-sd02"}  # ledger hints differ

# Targets.
TARGET_UPSTREAM_429 = 0
TARGET_IN_DEADLINE = 1.0  # share of admitted gateway calls answered within their deadline
TARGET_WAIT_RATIO = 0.2  # |actual wait until admission / predicted - 1|
TARGET_CAPACITY = 0.95  # share of the binding limit used under sustained overload

_PREDICTED = re.compile(r"predicted wait of ([0-9.]+) s")
_TEXT = (
    "the gateway keeps calls inside the limits of the account while the deadline of every call is "
    "known and honoured so refused calls come back at the right time and nothing waits in silence "
    "tokens requests minute bucket refill queue fair share organisation user budget reply stream"
)
_WORDS = _TEXT.split()


# -- processes -------------------------------------------------------------------------------------------


def base_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDEGATE_", "ANTHROPIC_"))}
    return env | {
        "CLAUDEGATE_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'claudegate.db'}",
        "CLAUDEGATE_USAGE_SPILL_FILE": str(workdir / "spill.jsonl"),
        "CLAUDEGATE_LOG_LEVEL": "warning",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@contextlib.contextmanager
def servers(
    args: argparse.Namespace,
    arm: str,
    workdir: Path,
    *,
    serve_args: tuple[str, ...] = (),
    gateway_env: dict[str, str] | None = None,
) -> Iterator[tuple[Proc, Proc | None, int, int, str]]:
    """A fresh simulator (and, for the gateway arm, a fresh gateway in front of it, started with
    ``serve_args`` and ``gateway_env`` added)."""
    split = args.layout == "split"
    env = base_env(workdir)
    sim_port = free_port()
    simulator = Proc(
        f"simulator ({arm})",
        claudegate(
            "simulate",
            "--port",
            str(sim_port),
            "--tier",
            args.tier,
            "--latency",
            "realistic",
            "--burst",
            str(args.sim_burst),
            "--seed",
            str(args.seed),
        ),
        env,
        "1" if split else None,
        workdir / f"simulator-{arm}.log",
    )
    gateway: Proc | None = None
    gw_port = 0
    client_key = UPSTREAM_KEYS["sdk"]
    try:
        if arm == "gateway":
            created = subprocess.run(
                claudegate("keys", "create", "--org", "bench", "--json"),
                env=env,
                capture_output=True,
                check=True,
            )
            client_key = json.loads(created.stdout)["key"]
            gw_port = free_port()
            gateway = Proc(
                "gateway",
                claudegate("serve", "--port", str(gw_port), *serve_args),
                env
                | {
                    "CLAUDEGATE_UPSTREAM_URL": f"http://127.0.0.1:{sim_port}",
                    "ANTHROPIC_API_KEY": UPSTREAM_KEYS["gateway"],
                    "CLAUDEGATE_UPSTREAM_TIER": args.tier,
                    "CLAUDEGATE_FLOW_BURST": str(min(1.0, args.sim_burst)),
                    "CLAUDEGATE_DEFAULT_DEADLINE_S": str(args.deadline_s),
                }
                | (gateway_env or {}),
                "0" if split else None,
                workdir / "gateway.log",
            )
        yield simulator, gateway, sim_port, gw_port, client_key
    finally:
        if gateway is not None:
            gateway.stop()
        simulator.stop()


# -- the load --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedCall:
    index: int
    phase: str  # "burst" or "overload"
    at: float  # seconds after the arm's start
    prompt: str
    reply_tokens: int


def plan_load(args: argparse.Namespace, rpm: int) -> list[PlannedCall]:
    """The same calls for both arms: the burst at t=0, then Poisson arrivals during the overload."""
    rng = random.Random(args.seed)

    def call(index: int, phase: str, at: float) -> PlannedCall:
        words = rng.randint(args.prompt_words[0], args.prompt_words[1])
        prompt = f"Call {index}: " + " ".join(rng.choice(_WORDS) for _ in range(words))
        tokens = rng.lognormvariate(math.log(args.reply_median), args.reply_sigma)
        return PlannedCall(index, phase, at, prompt, max(args.reply_min, min(args.reply_max, round(tokens))))

    calls = [call(i, "burst", 0.0) for i in range(args.burst)]
    rate = args.overload_factor * rpm / 60.0
    at = args.burst_phase_s + rng.expovariate(rate)
    end = args.burst_phase_s + args.overload_s
    while at < end and len(calls) < 100_000:
        calls.append(call(len(calls), "overload", at))
        at += rng.expovariate(rate)
    return calls


@dataclass
class CallRecord:
    index: int
    phase: str
    reply_tokens: int
    sent: float  # seconds after the arm's start
    latency: float = math.nan  # until the reply (or the final error) was read
    status: int = 0  # 0: no answer (connection error, or cut off at the end of the run)
    origin: str = ""  # "gateway" for a refusal the gateway made, "upstream" for an upstream error
    input_tokens: int = 0
    output_tokens: int = 0
    retry_after: float | None = None
    predicted_wait: float | None = None
    upstream_request_id: str | None = None
    attempts: int = 0
    first_429_at: float | None = None
    first_retry_after: float | None = None
    admitted_attempt_sent: float | None = None  # the attempt that succeeded, when there were 429s first
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class Probe:
    kind: str  # "retry-after" or "queue"
    phase: str
    index: int
    refused_at: float
    retry_after: float
    predicted_wait: float | None
    attempts: int = 0
    admitted: bool = False
    started_upstream: float | None = None  # when the admitted attempt reached the simulator (ledger)
    ok: bool = False
    retry_afters: list[float] = field(default_factory=list)

    @property
    def wait(self) -> float | None:
        return None if self.started_upstream is None else self.started_upstream - self.refused_at

    @property
    def ratio_to_retry_after(self) -> float | None:
        wait = self.wait
        return None if wait is None or not self.retry_after else wait / self.retry_after

    @property
    def ratio_to_predicted(self) -> float | None:
        wait = self.wait
        return None if wait is None or not self.predicted_wait else wait / self.predicted_wait


class Ledger:
    """Polls the simulator's ledger and notes when each request first appeared (its arrival, +- poll/2)."""

    def __init__(self, url: str, key_hint: str, interval: float, clock: Callable[[], float]) -> None:
        self.url = url
        self.key_hint = key_hint
        self.interval = interval
        self.clock = clock
        self.arrived: dict[str, float] = {}
        self.entries: list[dict[str, Any]] = []
        self._seen = 0
        self._previous = 0.0
        self._stop = asyncio.Event()

    async def poll_once(self, session: aiohttp.ClientSession) -> None:
        async with session.get(self.url) as response:
            entries = await response.json(content_type=None)
        now = self.clock()
        when = (self._previous + now) / 2  # for a simulator whose ledger does not say (within a poll)
        wall_offset = time.time() - now
        for entry in entries[self._seen :]:
            received = entry.get("received_at")
            arrived = received - wall_offset if received is not None else when
            self.arrived.setdefault(entry["request_id"], arrived)
        self._seen = len(entries)
        self._previous = now
        self.entries = [e for e in entries if e["api_key_hint"] == self.key_hint]

    async def run(self, session: aiohttp.ClientSession, limit_s: float) -> None:
        self._previous = self.clock()
        ends = time.monotonic() + limit_s
        while not self._stop.is_set() and time.monotonic() < ends:
            with contextlib.suppress(aiohttp.ClientError, OSError, ValueError):
                await self.poll_once(session)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    def stop(self) -> None:
        self._stop.set()


class AttemptLog:
    """Every HTTP attempt the SDK makes (its retries included), from httpx event hooks."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.sent: dict[str, list[float]] = {}
        self.answered: dict[str, list[tuple[float, int, float | None]]] = {}

    async def on_request(self, request: httpx2.Request) -> None:
        call = request.headers.get(CALL_HEADER)
        if call is not None:
            self.sent.setdefault(call, []).append(self.clock())

    async def on_response(self, response: httpx2.Response) -> None:
        call = response.request.headers.get(CALL_HEADER)
        if call is not None:
            retry_after = _float(response.headers.get("retry-after"))
            self.answered.setdefault(call, []).append((self.clock(), response.status_code, retry_after))


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


@dataclass
class Arm:
    name: str
    args: argparse.Namespace
    client: anthropic.AsyncAnthropic
    ledger: Ledger
    attempts: AttemptLog
    started: float
    records: list[CallRecord] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    refusals: int = 0
    queue_probe_busy: bool = False
    probe_tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def now(self) -> float:
        return time.monotonic() - self.started

    async def send(
        self, planned: PlannedCall, tag: str, deadline_s: float | None = None
    ) -> tuple[int, str, Any, httpx2.Headers | None, str]:
        """One call through the SDK; (status, origin, parsed message or None, headers, error text)."""
        headers = {"x-simulator-reply-tokens": str(planned.reply_tokens), CALL_HEADER: tag}
        if self.name == "gateway":
            headers[DEADLINE_HEADER] = str(round((deadline_s or self.args.deadline_s) * 1000))
        try:
            raw = await asyncio.wait_for(
                self.client.messages.with_raw_response.create(
                    model=MODEL,
                    max_tokens=self.args.max_tokens,
                    messages=[{"role": "user", "content": planned.prompt}],
                    extra_headers=headers,
                ),
                self.args.call_timeout_s,
            )
        except anthropic.APIStatusError as error:
            origin = (
                "gateway" if error.response.headers.get("x-claudegate-origin") == "gateway" else "upstream"
            )
            return error.status_code, origin, None, error.response.headers, error.message
        except (anthropic.APIConnectionError, TimeoutError) as error:
            return 0, "", None, None, type(error).__name__
        return 200, "", await raw.parse(), raw.headers, ""

    async def call(self, planned: PlannedCall) -> None:
        record = CallRecord(planned.index, planned.phase, planned.reply_tokens, sent=self.now())
        self.records.append(record)
        tag = f"c{planned.index}"
        status, origin, message, headers, error = await self.send(planned, tag)
        record.latency = self.now() - record.sent
        record.status, record.origin, record.error = status, origin, error[:200]
        if message is not None:
            record.input_tokens = message.usage.input_tokens
            record.output_tokens = message.usage.output_tokens
        if headers is not None:
            record.upstream_request_id = headers.get("request-id") if status == 200 else None
            record.retry_after = _float(headers.get("retry-after"))
        found = _PREDICTED.search(error)
        record.predicted_wait = float(found.group(1)) if found else None
        answered = self.attempts.answered.get(tag, [])
        sent = self.attempts.sent.get(tag, [])
        record.attempts = len(sent)
        first_429 = next((a for a in answered if a[1] == 429), None)
        if first_429 is not None:
            record.first_429_at, record.first_retry_after = first_429[0], first_429[2]
            if status == 200 and sent:
                record.admitted_attempt_sent = sent[-1]
        if self.name == "gateway" and status == 429 and origin == "gateway":
            self.refusals += 1
            self.maybe_probe(planned, record)

    # -- probes (gateway arm) -----------------------------------------------------------------------------

    def maybe_probe(self, planned: PlannedCall, record: CallRecord) -> None:
        if record.retry_after is None:
            return
        args = self.args
        refused_at = record.sent + record.latency
        if refused_at > args.burst_phase_s + args.overload_s:
            return
        probe: Probe | None = None
        kinds = [p.kind for p in self.probes]
        # A retry-after probe must be able to come back and be answered before the run ends, or it measures
        # nothing (a burst refusal late in the fair order can be told to come back minutes later).
        measurable = (
            refused_at + record.retry_after + args.deadline_s
            <= args.burst_phase_s + args.overload_s + args.drain_s
        )
        if (
            self.refusals % args.probe_every == 0
            and measurable
            and kinds.count("retry-after") < args.retry_probes
            and (record.phase == "overload" or kinds.count("retry-after") < args.retry_probes // 2)
        ):
            probe = Probe(
                "retry-after",
                record.phase,
                planned.index,
                refused_at,
                record.retry_after,
                record.predicted_wait,
            )
            runner = self.retry_after_probe(planned, probe)
        elif (
            not self.queue_probe_busy
            and kinds.count("queue") < args.queue_probes
            and record.predicted_wait is not None
        ):
            probe = Probe(
                "queue", record.phase, planned.index, refused_at, record.retry_after, record.predicted_wait
            )
            self.queue_probe_busy = True
            runner = self.queue_probe(planned, probe)
        if probe is None:
            return
        self.probes.append(probe)
        task = asyncio.get_running_loop().create_task(runner)
        self.probe_tasks.add(task)
        task.add_done_callback(self.probe_tasks.discard)

    async def retry_after_probe(self, planned: PlannedCall, probe: Probe) -> None:
        """Come back right after retry-after, as often as told (bounded), with a fresh deadline."""
        wait = probe.retry_after
        for attempt in range(1, self.args.probe_attempts + 1):
            await asyncio.sleep(wait)
            probe.attempts = attempt
            status, origin, _, headers, _ = await self.send(planned, f"p{planned.index}-{attempt}")
            if status == 429 and origin == "gateway" and headers is not None:
                wait = _float(headers.get("retry-after")) or 1.0
                probe.retry_afters.append(wait)
                continue
            await self.note_admission(probe, status, headers)
            return

    async def queue_probe(self, planned: PlannedCall, probe: Probe) -> None:
        """Send the refused call again at once, with a deadline that lets it wait for its predicted turn."""
        try:
            assert probe.predicted_wait is not None
            # Room for the wait, the reply (up to about a deadline here) and the margin the gateway keeps for
            # refused callers coming back before it: the probe measures the prediction, not the deadline.
            deadline = probe.predicted_wait + 2 * self.args.deadline_s
            probe.attempts = 1
            status, origin, _, headers, _ = await self.send(planned, f"q{planned.index}", deadline_s=deadline)
            if not (status == 429 and origin == "gateway"):
                await self.note_admission(probe, status, headers)
        finally:
            self.queue_probe_busy = False

    async def note_admission(self, probe: Probe, status: int, headers: httpx2.Headers | None) -> None:
        probe.admitted = True
        probe.ok = status == 200
        request_id = headers.get("request-id") if headers is not None else None
        for _ in range(20):  # the ledger is polled: give it a moment to have seen this request
            if request_id in self.ledger.arrived:
                probe.started_upstream = self.ledger.arrived[request_id]
                return
            await asyncio.sleep(self.ledger.interval)


async def run_arm(
    args: argparse.Namespace, arm_name: str, plan: list[PlannedCall], workdir: Path
) -> dict[str, Any]:
    with servers(args, arm_name, workdir) as (simulator, gateway, sim_port, gw_port, client_key):
        sim_url = f"http://127.0.0.1:{sim_port}"
        await wait_until_up(f"{sim_url}/v1/models", simulator)
        if gateway is not None:
            base_url = f"http://127.0.0.1:{gw_port}"
            await wait_until_up(f"{base_url}/health", gateway)
            max_retries = 0
        else:
            base_url, max_retries = sim_url, args.sdk_max_retries
        started = time.monotonic()

        def clock() -> float:
            return time.monotonic() - started

        attempts = AttemptLog(clock)
        http_client = anthropic.DefaultAsyncHttpxClient(
            event_hooks={"request": [attempts.on_request], "response": [attempts.on_response]}
        )
        client = anthropic.AsyncAnthropic(
            api_key=client_key,
            base_url=base_url,
            max_retries=max_retries,
            timeout=args.call_timeout_s,
            http_client=http_client,
        )
        poll = args.ledger_poll_s if arm_name == "gateway" else max(args.ledger_poll_s, 1.0)
        ledger = Ledger(f"{sim_url}/_simulator/ledger", UPSTREAM_KEYS[arm_name][-4:], poll, clock)
        arm = Arm(arm_name, args, client, ledger, attempts, started)
        total_s = args.burst_phase_s + args.overload_s + args.drain_s
        print(
            f"[{arm_name}] {len(plan)} calls over {args.burst_phase_s + args.overload_s:.0f} s "
            f"(burst {args.burst}), at most {total_s:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        async with aiohttp.ClientSession() as session:
            poller = asyncio.get_running_loop().create_task(ledger.run(session, total_s + 60))
            tasks: list[asyncio.Task[None]] = []
            for planned in plan:
                delay = planned.at - arm.now()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.get_running_loop().create_task(arm.call(planned)))
            ends = started + total_s
            while time.monotonic() < ends:
                pending = [t for t in [*tasks, *arm.probe_tasks] if not t.done()]
                if not pending:
                    break
                await asyncio.wait(pending, timeout=max(0.0, min(1.0, ends - time.monotonic())))
            cut = [t for t in [*tasks, *arm.probe_tasks] if not t.done()]
            for task in cut:
                task.cancel()
            await asyncio.gather(*cut, return_exceptions=True)
            ledger.stop()
            await poller
            await ledger.poll_once(session)  # the final ledger, output tokens of every completed reply
        await client.close()
    done = arm.now()
    print(
        f"[{arm_name}] done in {done:.0f} s; {len(cut)} calls cut off at the end", file=sys.stderr, flush=True
    )
    return {"arm": arm, "cut_off": len(cut), "wall_s": done}


# -- scoring ---------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def share(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def score(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    arm: Arm = result["arm"]
    limits = limits_for(args.tier, RATE_CLASS)
    records = arm.records
    deadline = args.deadline_s
    out: dict[str, Any] = {"arm": arm.name, "calls": len(records), "cut_off": result["cut_off"]}
    out["wall_s"] = result["wall_s"]

    ledger = arm.ledger.entries
    out["upstream_requests"] = len(ledger)
    out["upstream_429"] = sum(1 for e in ledger if e["status"] == 429)
    out["upstream_other_errors"] = sum(1 for e in ledger if e["status"] not in (200, 429))

    for phase in ("burst", "overload", "all"):
        mine = [r for r in records if phase in ("all", r.phase)]
        refused = [r for r in mine if r.status == 429 and r.origin == "gateway"]
        if arm.name == "gateway":  # admitted: not refused by the gateway
            admitted = [r for r in mine if not (r.status == 429 and r.origin == "gateway")]
        else:  # admitted: eventually succeeded
            admitted = [r for r in mine if r.ok]
        ok = [r for r in mine if r.ok]
        in_time = [r for r in ok if r.latency <= deadline]
        out[phase] = {
            "offered": len(mine),
            "ok": len(ok),
            "refused_by_gateway": len(refused),
            "refused_late": sum(1 for r in refused if r.latency > args.late_refusal_s),
            "upstream_errors": sum(1 for r in mine if r.status not in (0, 200) and r.origin == "upstream"),
            "no_answer": sum(1 for r in mine if r.status == 0),
            "admitted": len(admitted),
            "admitted_in_deadline": sum(1 for r in admitted if r.ok and r.latency <= deadline),
            "in_deadline_share_of_admitted": share(
                sum(1 for r in admitted if r.ok and r.latency <= deadline), len(admitted)
            ),
            "in_deadline_share_of_offered": share(len(in_time), len(mine)),
            "latency_p50": percentile([r.latency for r in ok], 50),
            "latency_p90": percentile([r.latency for r in ok], 90),
            "latency_p99": percentile([r.latency for r in ok], 99),
            "refusal_latency_p50": percentile([r.latency for r in refused], 50),
            "refusal_latency_p99": percentile([r.latency for r in refused], 99),
            "error_latency_p50": percentile([r.latency for r in mine if r.status not in (0, 200)], 50),
            "error_latency_p99": percentile([r.latency for r in mine if r.status not in (0, 200)], 99),
            "deadline_misses": [
                {"index": r.index, "latency": round(r.latency, 2), "reply_tokens": r.reply_tokens}
                for r in admitted
                if r.ok and r.latency > deadline
            ],
        }

    # Capacity use over the steady part of the overload, from the ledger's arrival times.
    start, end = args.burst_phase_s + args.settle_s, args.burst_phase_s + args.overload_s
    minutes = (end - start) / 60.0
    window = [
        e
        for e in ledger
        if e["status"] == 200 and start <= arm.ledger.arrived.get(e["request_id"], -1.0) < end
    ]
    requests_pm = len(window) / minutes if minutes > 0 else math.nan
    input_pm = sum(e["input_tokens"] + e["cache_creation_input_tokens"] for e in window) / minutes
    output_pm = sum(e["output_tokens"] for e in window) / minutes
    use = {
        "requests": requests_pm / limits.requests_per_minute,
        "input": input_pm / limits.input_tokens_per_minute,
        "output": output_pm / limits.output_tokens_per_minute,
    }
    binding = max(use, key=lambda kind: use[kind])
    # Over the whole run (burst and overload): output admitted against what the account could give in that
    # time (a full bucket at the start plus the refill). Less noisy than a window for the plain SDK, whose
    # admissions come in waves (the simulator admits on a nearly empty output bucket and charges later).
    whole_end = args.burst_phase_s + args.overload_s
    whole = [
        e for e in ledger if e["status"] == 200 and arm.ledger.arrived.get(e["request_id"], 1e9) < whole_end
    ]
    whole_capacity = limits.output_tokens_per_minute * (args.sim_burst + whole_end / 60.0)
    out["capacity"] = {
        "window_s": [start, end],
        "requests_per_minute": requests_pm,
        "input_tokens_per_minute": input_pm,
        "output_tokens_per_minute": output_pm,
        "use": use,
        "binding": binding,
        "binding_use": use[binding],
        "incomplete_in_window": sum(1 for e in window if not e.get("completed", True)),
        "whole_run_output_use": sum(e["output_tokens"] for e in whole) / whole_capacity,
    }

    # Predicted waits.
    waits: dict[str, Any] = {}
    for kind in ("retry-after", "queue"):
        probes = [p for p in arm.probes if p.kind == kind]
        measured = [p for p in probes if p.wait is not None]
        ratios_told = [p.ratio_to_retry_after for p in measured if p.ratio_to_retry_after is not None]
        ratios_predicted = [p.ratio_to_predicted for p in measured if p.ratio_to_predicted is not None]
        key = ratios_told if kind == "retry-after" else ratios_predicted
        waits[kind] = {
            "probes": len(probes),
            "measured": len(measured),
            "admitted_first_retry": sum(1 for p in probes if p.admitted and p.attempts == 1),
            "never_admitted": sum(1 for p in probes if not p.admitted),
            "ratio_p50": percentile(key, 50),
            "ratio_p90": percentile(key, 90),
            "ratio_min": min(key, default=None),
            "ratio_max": max(key, default=None),
            "within_target": sum(1 for r in key if abs(r - 1) <= TARGET_WAIT_RATIO),
            "ratio_to_stated_prediction_p50": percentile(ratios_predicted, 50),
            # How the time a refused caller is told compares with the wait stated for the queue.
            "told_to_stated_overload": [
                p.retry_after / p.predicted_wait
                for p in probes
                if p.phase == "overload" and p.predicted_wait and p.retry_after is not None
            ],
            "probes_by_phase": {
                phase: sum(1 for p in probes if p.phase == phase) for phase in ("burst", "overload")
            },
            "by_phase": {
                phase: [
                    round(r, 2)
                    for p in probes
                    if p.phase == phase
                    for r in [p.ratio_to_retry_after if kind == "retry-after" else p.ratio_to_predicted]
                    if r is not None
                ]
                for phase in ("burst", "overload")
            },
        }
    if arm.name == "sdk":
        retried = [r for r in records if r.first_429_at is not None]
        recovered = [
            r for r in retried if r.ok and r.admitted_attempt_sent is not None and r.first_retry_after
        ]
        ratios = [
            (r.admitted_attempt_sent - r.first_429_at) / r.first_retry_after  # type: ignore[operator]
            for r in recovered
        ]
        waits["sdk-retries"] = {
            "calls_with_429": len(retried),
            "recovered": len(recovered),
            "admitted_first_retry": sum(1 for r in recovered if r.attempts == 2),
            "gave_up_after_429": sum(1 for r in retried if r.status == 429),
            "ratio_p50": percentile(ratios, 50),
            "ratio_p90": percentile(ratios, 90),
            "within_target": sum(1 for r in ratios if abs(r - 1) <= TARGET_WAIT_RATIO),
        }
    out["waits"] = waits
    out["records"] = [asdict(r) for r in records]
    out["probes"] = [asdict(p) | {"wait": p.wait} for p in arm.probes]
    out["ledger"] = [  # every request the simulator saw: (arrival, status, input, output tokens)
        (arm.ledger.arrived.get(e["request_id"]), e["status"], e["input_tokens"], e["output_tokens"])
        for e in ledger
    ]
    return out


# -- the table -------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "PASS" if ok else "FAIL"


def rows(args: argparse.Namespace, arms: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    gw, sdk = arms.get("gateway"), arms.get("sdk")
    table: list[tuple[str, str, str, str, str]] = []

    def row(
        metric: str, get: Callable[[dict[str, Any]], str], target: str = "", ok: bool | None = None
    ) -> None:
        table.append(
            (metric, get(gw) if gw else "-", get(sdk) if sdk else "-", target, _verdict(ok) if target else "")
        )

    row("calls offered (burst + overload)", lambda a: f"{a['burst']['offered']} + {a['overload']['offered']}")
    row("answered 200", lambda a: str(a["all"]["ok"]))
    row(
        "refused by the gateway (429, at once / late)",
        lambda a: (
            f"{a['all']['refused_by_gateway']} ({a['all']['refused_by_gateway'] - a['all']['refused_late']}"
            f" / {a['all']['refused_late']})"
        ),
    )
    row("failed with an upstream error (after SDK retries)", lambda a: str(a["all"]["upstream_errors"]))
    row("requests that reached the simulator", lambda a: str(a["upstream_requests"]))
    row(
        "429s from upstream (simulator ledger)",
        lambda a: str(a["upstream_429"]),
        f"= {TARGET_UPSTREAM_429}",
        gw["upstream_429"] == TARGET_UPSTREAM_429 if gw else None,
    )
    for phase in ("burst", "overload", "all"):
        row(
            f"{phase}: admitted calls answered within {args.deadline_s:g} s",
            lambda a, p=phase: (
                f"{_pct(a[p]['in_deadline_share_of_admitted'])} "
                f"({a[p]['admitted_in_deadline']}/{a[p]['admitted']})"
            ),
            "100%",
            gw[phase]["in_deadline_share_of_admitted"] == TARGET_IN_DEADLINE if gw else None,
        )
    row(
        f"offered calls answered within {args.deadline_s:g} s",
        lambda a: _pct(a["all"]["in_deadline_share_of_offered"]),
    )
    if gw:
        told = gw["waits"]["retry-after"]
        for phase in ("burst", "overload"):
            ratios = told["by_phase"][phase]
            probes = told["probes_by_phase"][phase]
            row(
                f"{phase}: refused, back after retry-after: within 20% / probes",
                lambda a, r=ratios, n=probes, ph=phase: (
                    f"{sum(1 for x in r if abs(x - 1) <= TARGET_WAIT_RATIO)}/{n}"
                    f" (admitted: {_num(min(r, default=None))}-{_num(max(r, default=None))}x retry-after)"
                    if a is gw
                    else (_sdk_first(a) if ph == "overload" else "-")
                ),
                f"all within {TARGET_WAIT_RATIO:.0%}",
                probes > 0 and sum(1 for x in ratios if abs(x - 1) <= TARGET_WAIT_RATIO) == probes,
            )
        told_share = told["told_to_stated_overload"]
        row(
            "overload: retry-after / wait stated for the queue, p50 [range]",
            lambda a: (
                f"{_num(percentile(told_share, 50))} [{_num(min(told_share, default=None))}-"
                f"{_num(max(told_share, default=None))}]"
                if a is gw
                else "-"
            ),
        )
        queue = gw["waits"]["queue"]
        burst_q, over_q = queue["by_phase"]["burst"], queue["by_phase"]["overload"]
        row(
            "queue probe (diagnostic): actual start / stated wait",
            lambda a: (
                f"burst {', '.join(_num(x) for x in burst_q) or '-'}; overload p50 "
                f"{_num(percentile(over_q, 50))} [{_num(min(over_q, default=None))}-"
                f"{_num(max(over_q, default=None))}], within 20%: "
                f"{queue['within_target']}/{queue['measured']}"
                if a is gw
                else "-"
            ),
        )
    for kind, label in (
        ("requests", "requests/min / RPM"),
        ("output", "output tokens/min / OTPM"),
        ("input", "input tokens/min / ITPM"),
    ):
        row(f"steady overload: {label}", lambda a, k=kind: _pct(a["capacity"]["use"][k]))
    row(
        "steady overload: binding limit used",
        lambda a: f"{_pct(a['capacity']['binding_use'])} ({a['capacity']['binding']})",
        f">= {TARGET_CAPACITY:.0%}",
        gw["capacity"]["binding_use"] >= TARGET_CAPACITY if gw else None,
    )
    row(
        "whole run: output tokens admitted / (bucket + OTPM x time)",
        lambda a: _pct(a["capacity"]["whole_run_output_use"]),
    )
    row(
        "latency of successful calls p50 / p90 / p99 (s)",
        lambda a: " / ".join(_num(a["all"][f"latency_p{q}"]) for q in (50, 90, 99)),
    )
    row(
        "time to an error answer p50 / p99 (s)",
        lambda a: f"{_num(a['all']['error_latency_p50'], 3)} / {_num(a['all']['error_latency_p99'], 3)}",
    )
    return table


def _sdk_first(arm: dict[str, Any]) -> str:
    retries = arm["waits"].get("sdk-retries")
    if retries is None:
        return "-"
    return (
        f"{retries['within_target']}/{retries['calls_with_429']} calls with a 429 (all phases); "
        f"{retries['gave_up_after_429']} gave up"
    )


def table(lines: list[tuple[str, str, str, str, str]]) -> str:
    header = ("metric", "gateway", "plain SDK", "target (gateway)", "result")
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    out = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in lines]
    return "\n".join(out)


# -- main ------------------------------------------------------------------------------------------------


def code_version() -> dict[str, Any]:
    """Which claudegate was measured: the servers run from the same import path as this script."""
    import claudegate

    source = Path(claudegate.__file__).resolve().parent
    found: dict[str, Any] = {"source": str(source)}
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        git = ["git", "-C", str(source)]
        found["commit"] = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, check=True, text=True
        )
        found["commit"] = found["commit"].stdout.strip()
        status = subprocess.run(
            [*git, "status", "--porcelain", "."], capture_output=True, check=True, text=True
        )
        found["uncommitted_files"] = len(status.stdout.splitlines())
    return found


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    limits = limits_for(args.tier, RATE_CLASS)
    plan = plan_load(args, limits.requests_per_minute)
    if args.layout == "split":
        os.sched_setaffinity(0, {1})  # the load generator shares core 1 with the simulator
    scored: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="cg-flow-") as tmp:
        for arm in args.arms:
            workdir = Path(tmp) / arm
            workdir.mkdir()
            result = await run_arm(args, arm, plan, workdir)
            scored[arm] = score(args, result)
            await asyncio.sleep(1.0)
    lines = rows(args, scored)
    reply_tokens = [p.reply_tokens for p in plan]
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "anthropic": anthropic.__version__,
        "code": code_version(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"},
        "limits": asdict(limits),
        "load": {
            "calls": len(plan),
            "reply_tokens_mean": statistics.fmean(reply_tokens),
            "reply_tokens_p50": percentile([float(t) for t in reply_tokens], 50),
            "reply_tokens_max": max(reply_tokens),
        },
        "arms": scored,
        "table": table(lines),
    }


def repeated(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The verdicts over repeated runs: upstream 429s and admitted calls out of time summed over the runs, and
    the share of the binding limit used in each run's steady window, with its mean (the share over all the
    windows, which are of equal length) judged against the target. One call is about 2% of a 90 s window's
    output at tier 1, so a single run's share moves by a few points with which replies fall in it."""
    arms: dict[str, Any] = {}
    lines = []
    for name in results[0]["arms"]:
        scored = [result["arms"][name] for result in results]
        uses = [arm["capacity"]["binding_use"] for arm in scored]
        mean = statistics.fmean(uses)
        errors = sum(arm["upstream_429"] for arm in scored)
        admitted = sum(arm["all"]["admitted"] for arm in scored)
        in_time = sum(arm["all"]["admitted_in_deadline"] for arm in scored)
        arms[name] = {
            "binding_use": uses,
            "binding_use_mean": mean,
            "binding_use_stdev": statistics.stdev(uses),
            "upstream_429": errors,
            "admitted": admitted,
            "admitted_in_deadline": in_time,
        }
        runs = ", ".join(_pct(use) for use in uses)
        lines.append(
            (
                f"{name}: binding limit used, mean of {len(uses)} runs [each]",
                f"{_pct(mean)} (sd {_pct(arms[name]['binding_use_stdev'])}) [{runs}]",
                ">= 95%" if name == "gateway" else "",
                _verdict(mean >= TARGET_CAPACITY) if name == "gateway" else "",
            )
        )
        if name == "gateway":
            lines.append(("gateway: 429s from upstream, all runs", str(errors), "= 0", _verdict(errors == 0)))
            lines.append(
                (
                    "gateway: admitted calls answered in time, all runs",
                    f"{_pct(share(in_time, admitted))} ({in_time}/{admitted})",
                    "100%",
                    _verdict(in_time == admitted),
                )
            )
    header = ("over the runs", "value", "target", "result")
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(4)]
    text = [
        "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) + " |"
        for line in [header, tuple("-" * width for width in widths), *lines]
    ]
    return {"arms": arms, "table": "\n".join(text)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter run (~3 minutes) for a look")
    parser.add_argument("--arms", nargs="+", choices=("gateway", "sdk"), default=["gateway", "sdk"])
    parser.add_argument(
        "--tier", default="1", choices=("1", "2", "3", "4"), help="simulated tier (default 1)"
    )
    parser.add_argument(
        "--sim-burst",
        type=float,
        default=1.0,
        help="bucket capacity as a share of a minute's allowance, simulator and gateway (1.0)",
    )
    parser.add_argument("--burst", type=int, help="calls sent at once at the start (default 150; quick 100)")
    parser.add_argument(
        "--burst-phase-s", type=float, help="seconds before the overload starts (30; quick 15)"
    )
    parser.add_argument("--overload-s", type=float, help="seconds of sustained overload (120; quick 45)")
    parser.add_argument(
        "--settle-s", type=float, help="start of the overload left out of the capacity window (30; quick 15)"
    )
    parser.add_argument(
        "--drain-s", type=float, help="time allowed for calls still out at the end (60; quick 25)"
    )
    parser.add_argument("--overload-factor", type=float, default=3.0, help="offered load / RPM (default 3)")
    parser.add_argument("--deadline-s", type=float, default=10.0, help="each call's deadline (default 10 s)")
    parser.add_argument("--reply-median", type=float, default=180.0, help="median reply tokens (default 180)")
    parser.add_argument("--reply-sigma", type=float, default=0.6, help="log-normal sigma of replies (0.6)")
    parser.add_argument("--reply-min", type=int, default=20, help="shortest reply in tokens (default 20)")
    parser.add_argument("--reply-max", type=int, default=450, help="longest reply in tokens (default 450)")
    parser.add_argument("--prompt-words", type=int, nargs=2, default=[20, 300], help="prompt length range")
    parser.add_argument("--max-tokens", type=int, default=1024, help="max_tokens of every call (1024)")
    parser.add_argument("--sdk-max-retries", type=int, default=2, help="the plain SDK's retries (default 2)")
    parser.add_argument("--call-timeout-s", type=float, default=120.0, help="bound on one SDK call (120 s)")
    parser.add_argument("--probe-every", type=int, default=8, help="every N-th refusal is retried (8)")
    parser.add_argument("--retry-probes", type=int, default=20, help="retry-after probes at most (20)")
    parser.add_argument("--queue-probes", type=int, default=10, help="queue probes at most (10)")
    parser.add_argument("--probe-attempts", type=int, default=5, help="tries per retry-after probe (5)")
    parser.add_argument("--ledger-poll-s", type=float, default=0.2, help="ledger polling period (0.2 s)")
    parser.add_argument(
        "--late-refusal-s",
        type=float,
        default=2.0,
        help="a refusal slower than this was made after waiting in the queue, not at once (2 s)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the load (default 7)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs in all, the n-th with seed + n - 1; the capacity verdict is on their mean (default 1)",
    )
    parser.add_argument(
        "--layout",
        choices=("split", "none"),
        default="split",
        help="split: gateway on core 0, simulator and load generator on core 1",
    )
    parser.add_argument("--json", type=Path, help="also write the results (every call) as JSON to this file")
    args = parser.parse_args()
    defaults = (
        {"burst": 100, "burst_phase_s": 15.0, "overload_s": 45.0, "settle_s": 15.0, "drain_s": 25.0}
        if args.quick
        else {"burst": 150, "burst_phase_s": 30.0, "overload_s": 120.0, "settle_s": 30.0, "drain_s": 60.0}
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.settle_s >= args.overload_s:
        parser.error("--settle-s must be shorter than --overload-s")
    if args.layout == "split" and (os.cpu_count() or 1) < 2:
        parser.error("--layout split needs two cores; use --layout none")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    run: Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run = uvloop.run
    first_seed, results, summary = args.seed, [], {}
    for index in range(args.repeat):
        args.seed = first_seed + index  # each run its own load (and simulator), so the runs are independent
        began = time.monotonic()
        result = run(amain(args))
        result["wall_s"] = time.monotonic() - began
        if args.repeat > 1:
            print(f"\nrun {index + 1} of {args.repeat} (seed {args.seed}):")
        print(result["table"])
        load = result["load"]
        print(
            f"\n{load['calls']} calls per arm; reply tokens mean {load['reply_tokens_mean']:.0f}, "
            f"median {load['reply_tokens_p50']:.0f}, max {load['reply_tokens_max']}; "
            f"limits {result['limits']}; run took {result['wall_s']:.0f} s"
        )
        results.append(result)
    args.seed = first_seed
    if args.repeat > 1:
        summary = repeated(results)
        print("\n" + summary["table"])
    if args.json is not None:
        written = results[0] if args.repeat == 1 else {"runs": results, "summary": summary}
        args.json.write_text(json.dumps(written, indent=2) + "\n")


if __name__ == "__main__":
    main()
