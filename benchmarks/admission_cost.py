"""CPU per admit of the admission queue with 10, 100, 1,000 and 10,000 calls already waiting.

A lane whose request bucket is empty and refills once in a million seconds, so every call waits and none is
dispatched while measuring; the waiting calls belong to 10 organisations of 10 users each, so each decision
and prediction covers a realistic mix. For each size the queue is filled first, then ``--admits`` more calls
are admitted one by one, each given the loop long enough to be predicted, queued, and looked at by the
dispatcher (which every admit wakes). The figure is the process's CPU time over those admits, per admit.

Targets: at 10,000 waiting, under 0.05 ms per admit; from 10 to 10,000 waiting, the cost grows no faster
than log n (ratio to the 10-waiting figure at most log(n) / log(10)).

With ``--baseline REF`` (a git revision, default ``main``), the same measurement runs in the same process on
that revision's ``flow/admission.py``, loaded as a module of its own, for the ratio. Its queue is filled
through its internal ``_enqueue`` (filling it by admits costs the square of the queue: minutes at 10,000),
and fewer admits are measured where each costs milliseconds.

Run from the repository root::

    .venv/bin/python benchmarks/admission_cost.py
    .venv/bin/python benchmarks/admission_cost.py --baseline main --json admission_cost.json
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from claudegate.flow import admission as current
from claudegate.flow.limits import LaneLimits
from claudegate.flow.state import BucketSpec, MemoryState

SIZES = (10, 100, 1_000, 10_000)
TARGET_MS_AT_10K = 0.05
ORGS = 10
USERS = 10


def load_baseline(ref: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{ref}:src/claudegate/flow/admission.py"], capture_output=True, check=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_admission.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_admission", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_admission"] = module
    spec.loader.exec_module(module)
    return module


def lane() -> LaneLimits:
    big = BucketSpec("bench:in", 1e12, 1e12)
    return LaneLimits(
        "bench:lane", BucketSpec("bench:req", 1.0, 1e-6), big, BucketSpec("bench:out", 1e12, 1e12)
    )


def ticket(module: ModuleType, number: int) -> Any:
    org = number % ORGS
    user = (number // ORGS) % USERS
    return module.Ticket(
        f"org-{org}",
        f"user-{user}",
        400 + number % 7 * 50,
        320,
        deadline=math.inf,
        expected_output_tokens=256,
        org_weight=1.0 + org % 3,
    )


async def measure(module: ModuleType, waiting: int, admits: int, *, baseline: bool) -> float:
    """CPU seconds per admit with ``waiting`` calls queued."""
    loop = asyncio.get_running_loop()
    state = MemoryState(loop.time)
    kwargs: dict[str, Any] = {"clock": loop.time} if baseline else {}
    queue = module.AdmissionQueue(lane(), state, max_concurrency=10**9, **kwargs)
    for streamed in (False, True):  # the lane has timed a reply: waits may be promised
        queue.finished(module.Ticket("t", "t", 0, 0, deadline=0.0, streamed=streamed), 0.0, 0.0)
    first = ticket(module, -1)
    await queue.admit(first)  # takes the only request: from now on every call waits
    tasks: list[asyncio.Task[None]] = []
    if baseline:
        for number in range(waiting):
            queued = ticket(module, number)
            queued.future = loop.create_future()
            queue._enqueue(queued)  # see the module: filling by admits is quadratic
            queued.queued_at = loop.time()
    else:
        for number in range(waiting):
            tasks.append(loop.create_task(queue.admit(ticket(module, number))))
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    began = time.process_time()
    for number in range(admits):
        tasks.append(loop.create_task(queue.admit(ticket(module, waiting + number))))
        await asyncio.sleep(0)  # the admit runs: predicted, queued
        await asyncio.sleep(0)  # the dispatcher it woke looks at the head
    spent = time.process_time() - began
    assert queue.waiting == waiting + admits, (queue.waiting, waiting + admits)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return spent / admits


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--admits", type=int, default=2000, help="admits measured per size")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds per size")
    parser.add_argument("--baseline", default=None, help="git revision of the queue to compare with")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    arms: dict[str, tuple[ModuleType, bool]] = {"current": (current, False)}
    if args.baseline:
        arms[f"baseline ({args.baseline})"] = (load_baseline(args.baseline), True)
    results: dict[str, dict[int, float]] = {}
    for name, (module, baseline) in arms.items():
        results[name] = {}
        for waiting in SIZES:
            # The baseline costs milliseconds per admit at thousands waiting: measure fewer there.
            admits = max(10, min(args.admits, 200_000 // waiting)) if baseline else args.admits
            best = min(
                asyncio.run(measure(module, waiting, admits, baseline=baseline)) for _ in range(args.rounds)
            )
            results[name][waiting] = best
            print(f"{name:>20}  {waiting:>6} waiting: {best * 1e3:8.4f} ms CPU per admit", flush=True)
    print()
    print("| queue | " + " | ".join(f"{size:,} waiting" for size in SIZES) + " |")
    print("|---|" + "---|" * len(SIZES))
    for name, figures in results.items():
        base = figures[SIZES[0]]
        cells = [f"{figures[size] * 1e3:.4f} ms ({figures[size] / base:.2f}×)" for size in SIZES]
        print(f"| {name} | " + " | ".join(cells) + " |")
    logs = [f"{math.log(size) / math.log(SIZES[0]):.2f}×" for size in SIZES]
    print("| log n / log 10 | " + " | ".join(logs) + " |")
    figures = results["current"]
    growth_ok = all(
        figures[size] / figures[SIZES[0]] <= math.log(size) / math.log(SIZES[0]) for size in SIZES[1:]
    )
    at_10k = figures[SIZES[-1]] * 1e3
    print()
    print(
        f"at 10,000 waiting: {at_10k:.4f} ms per admit (target < {TARGET_MS_AT_10K}): "
        f"{'PASS' if at_10k < TARGET_MS_AT_10K else 'FAIL'}"
    )
    print(f"growth no faster than log n: {'PASS' if growth_ok else 'FAIL'}")
    for name, other in results.items():
        if name != "current":
            print(f"{name} / current at 10,000 waiting: {other[SIZES[-1]] / figures[SIZES[-1]]:.0f}×")
    if args.json is not None:
        figures_by_arm = {name: {str(size): v for size, v in f.items()} for name, f in results.items()}
        args.json.write_text(json.dumps(figures_by_arm))


if __name__ == "__main__":
    main()
