"""Refused callers that come back at their ``retry-after``: do they start then?

100 calls at once, each with a 5 s deadline (``x-claudegate-deadline-ms``), through ``claudegate serve`` in
front of a fresh simulator at tier 1 (``--latency realistic``), with the official ``anthropic`` SDK
(``max_retries=0``). Every call the gateway refuses (its 429, ``x-claudegate-origin: gateway``) sleeps its
``retry-after-ms`` and sends the same request again (same key, same body: the gateway knows it again) with
a fresh 5 s deadline, up to ``--tries`` times in all. Calls are streamed (the deadline bounds the first
token), replies 20-450 tokens (log-normal, as in ``flow_overload.py``), so output tokens per minute bind
(8,000 OTPM at tier 1).

With ``--workers N`` (N > 1) it runs twice, in one invocation: ``claudegate serve --workers 1`` and then
``--workers N``, both with their flow state in Redis (``CLAUDEGATE_TEST_REDIS_URL``, default db 13, a fresh
key prefix each). Every try is a new connection (a new SDK client), so the kernel spreads the tries over
the workers and a refused caller often comes back to another one, which must find its kept turn there.

Target: at least 95% of the refused callers that come back at their ``retry-after`` are admitted then
(not refused again). Also reported: how long after coming back their first event arrived, upstream 429s
(target 0) and admitted calls whose first event came after their deadline.

Run from the repository root::

    .venv/bin/python benchmarks/returning_callers.py
    .venv/bin/python benchmarks/returning_callers.py --calls 100 --deadline-s 5 --json returning.json
    .venv/bin/python benchmarks/returning_callers.py --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import anthropic

from _processes import wait_until_up
from flow_overload import MODEL, servers


@dataclass
class Caller:
    index: int
    reply_tokens: int
    tries: list[dict[str, float | int | str | None]] = field(default_factory=list)

    @property
    def refused_first(self) -> bool:
        return bool(self.tries) and self.tries[0]["status"] == 429

    @property
    def back_then(self) -> bool:
        """Refused once, and admitted on coming back at its retry-after."""
        return self.refused_first and len(self.tries) > 1 and self.tries[1]["status"] == 200


async def one(
    client: anthropic.AsyncAnthropic, caller: Caller, args: argparse.Namespace, began: float
) -> None:
    prompt = f"Call {caller.index}: tell me about fair queues, deadlines and refill rates."
    for _ in range(args.tries):
        if args.workers > 1:
            # A new client: a new connection, which the kernel may give to another worker.
            async with anthropic.AsyncAnthropic(
                base_url=str(client.base_url), api_key=client.api_key, max_retries=0, timeout=120
            ) as fresh:
                again = await one_try(fresh, caller, args, began, prompt)
        else:
            again = await one_try(client, caller, args, began, prompt)
        if again is None:
            return
        await asyncio.sleep(again)


async def one_try(
    client: anthropic.AsyncAnthropic, caller: Caller, args: argparse.Namespace, began: float, prompt: str
) -> float | None:
    """One try of the caller's call: the seconds to sleep before trying again, or None (done)."""
    sent = time.monotonic() - began
    headers = {
        "x-simulator-reply-tokens": str(caller.reply_tokens),
        "x-claudegate-deadline-ms": str(round(args.deadline_s * 1000)),
    }
    try:
        raw = await client.messages.with_raw_response.create(
            model=MODEL,
            max_tokens=args.max_tokens,
            messages=[{"role": "user", "content": prompt}],
            extra_headers=headers,
            stream=True,
        )
        worker = raw.headers.get("x-claudegate-worker")
        stream = await raw.parse()
        first_event = time.monotonic() - began - sent
        async for _event in stream:
            pass
    except anthropic.APIStatusError as error:
        gateway = error.response.headers.get("x-claudegate-origin") == "gateway"
        retry_ms = error.response.headers.get("retry-after-ms")
        retry_s = float(retry_ms) / 1000 if retry_ms else float(error.response.headers.get("retry-after", 1))
        caller.tries.append(
            {
                "sent": sent,
                "status": error.status_code,
                "origin": "gateway" if gateway else "upstream",
                "seconds": time.monotonic() - began - sent,
                "retry_after": retry_s,
                "worker": error.response.headers.get("x-claudegate-worker"),
            }
        )
        if error.status_code != 429 or not gateway:
            return None
        return retry_s
    seconds = time.monotonic() - began - sent
    caller.tries.append(
        {"sent": sent, "status": 200, "seconds": seconds, "first_event": first_event, "worker": worker}
    )
    return None


async def run(args: argparse.Namespace, workers: int) -> dict[str, object]:
    rng = random.Random(args.seed)
    callers = [
        Caller(index, int(min(450, max(20, rng.lognormvariate(5.2, 0.6))))) for index in range(args.calls)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        setup = argparse.Namespace(
            layout=args.layout, tier="1", sim_burst=1.0, seed=args.seed, deadline_s=args.deadline_s
        )
        serve_args: tuple[str, ...] = ()
        gateway_env: dict[str, str] = {}
        if args.workers > 1:  # this run and its one-worker baseline keep their flow state in Redis
            serve_args = ("--workers", str(workers))
            gateway_env = {
                "CLAUDEGATE_REDIS_URL": os.environ.get(
                    "CLAUDEGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13"
                ),
                "CLAUDEGATE_REDIS_PREFIX": f"bench-returning-{secrets.token_hex(4)}:",
            }
        with servers(setup, "gateway", workdir, serve_args=serve_args, gateway_env=gateway_env) as (
            simulator,
            gateway,
            sim_port,
            gw_port,
            key,
        ):
            assert gateway is not None
            await wait_until_up(f"http://127.0.0.1:{sim_port}/v1/models", simulator)
            await wait_until_up(f"http://127.0.0.1:{gw_port}/health", gateway)
            if workers > 1:
                await asyncio.sleep(2.0)  # every worker up
            client = anthropic.AsyncAnthropic(
                base_url=f"http://127.0.0.1:{gw_port}", api_key=key, max_retries=0, timeout=120
            )
            began = time.monotonic()
            await asyncio.gather(*(one(client, caller, args, began) for caller in callers))
            await client.close()
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{sim_port}/_simulator/ledger") as reply,
            ):
                entries = await reply.json(content_type=None)
    upstream_429 = sum(1 for entry in entries if entry.get("status") == 429)
    refused = [caller for caller in callers if caller.refused_first]
    came_back = [caller for caller in refused if len(caller.tries) > 1]
    started_then = [caller for caller in came_back if caller.back_then]
    admitted = [try_ for caller in callers for try_ in caller.tries if try_["status"] == 200]
    late = [try_ for try_ in admitted if float(try_["first_event"] or 0) > args.deadline_s]
    back_seconds = [float(caller.tries[1]["first_event"] or 0) for caller in started_then]
    moved = [c for c in came_back if c.tries[0].get("worker") != c.tries[1].get("worker")]
    result: dict[str, object] = {
        "workers": workers,
        "calls": len(callers),
        "admitted_first": sum(1 for c in callers if c.tries and c.tries[0]["status"] == 200),
        "refused_first": len(refused),
        "came_back": len(came_back),
        "started_on_return": len(started_then),
        "share_started_on_return": len(started_then) / len(came_back) if came_back else None,
        "came_back_to_another_worker": len(moved),
        "started_on_return_at_another_worker": sum(1 for c in moved if c.back_then),
        "refused_again": [len([t for t in c.tries[1:] if t["status"] == 429]) for c in came_back],
        "never_admitted": sum(1 for c in callers if all(t["status"] != 200 for t in c.tries)),
        "upstream_429": upstream_429,
        "admitted_late": len(late),
        "first_event_after_return_p50_s": statistics.median(back_seconds) if back_seconds else None,
        "first_event_after_return_max_s": max(back_seconds) if back_seconds else None,
        "callers": [asdict(caller) for caller in callers],
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--deadline-s", type=float, default=5.0)
    parser.add_argument("--tries", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--layout", choices=["split", "none"], default="split")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--workers", type=int, default=1, help="gateway processes on Redis (run against one, on Redis too)"
    )
    args = parser.parse_args()
    results = [asyncio.run(run(args, workers)) for workers in sorted({1, args.workers})]
    for result in results:
        share = result["share_started_on_return"]
        print(f"\n-- {result['workers']} worker(s)")
        for key, value in result.items():
            if key != "callers":
                print(f"{key:>38}: {value}")
        ok = isinstance(share, float) and share >= 0.95
        verdict = "PASS" if ok else "FAIL"
        print(f"refused callers back at their retry-after that started then: {verdict} (target 95%)")
        print(f"upstream 429s: {'PASS' if result['upstream_429'] == 0 else 'FAIL'} (target 0)")
    if args.json is not None:
        args.json.write_text(json.dumps(results if len(results) > 1 else results[0], indent=1))


if __name__ == "__main__":
    main()
