"""CPU per admit of the admission queue with 10, 100, 1,000 and 10,000 calls already waiting.

A lane whose request bucket is empty and refills once in a million seconds, so every call waits and none is
dispatched while measuring; the waiting calls belong to 10 organisations of 10 users each (``--orgs``,
``--users``: a prediction's cost should not grow with them either), so each decision and prediction covers a
realistic mix. For each size the queue is filled first, then ``--admits`` more calls
are admitted one by one, each given the loop long enough to be predicted, queued, and looked at by the
dispatcher (which every admit wakes). The figure is the process's CPU time over those admits, per admit.

Targets: at 10,000 waiting, under 0.05 ms per admit; from 10 to 10,000 waiting, the cost grows no faster
than log n (ratio to the 10-waiting figure at most log(n) / log(10)).

With ``--baseline REF`` (a git revision, e.g. ``main``), the same measurement runs on that revision's
``claudegate`` package (``git archive`` into a temporary directory, measured by this script in a child
process with that package first on its path), round by round alternately with the working tree's, so both
see the same load on a shared machine; each figure is the best of its rounds.

Run from the repository root::

    .venv/bin/python benchmarks/admission_cost.py
    .venv/bin/python benchmarks/admission_cost.py --baseline main --json admission_cost.json
    .venv/bin/python benchmarks/admission_cost.py --baseline main --orgs 1000 --users 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from claudegate.flow import admission
from claudegate.flow.limits import LaneLimits
from claudegate.flow.state import BucketSpec, MemoryState

SIZES = (10, 100, 1_000, 10_000)
TARGET_MS_AT_10K = 0.05
MIX = {"orgs": 10, "users": 10}  # organisations, and users in each, of the waiting calls (--orgs, --users)


def extract_baseline(ref: str) -> Path:
    """The ``src`` directory of revision ``ref``, in a temporary directory."""
    root = Path(tempfile.mkdtemp(prefix="admission_cost_"))
    archive = subprocess.run(["git", "archive", ref, "src"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root / "src"


def measure_baseline(source: Path, admits: int) -> dict[int, float]:
    """One round of every size on the package under ``source``, in a child process."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, __file__, "--rounds", "1", "--admits", str(admits), "--quiet"]
        command += ["--orgs", str(MIX["orgs"]), "--users", str(MIX["users"])]
        subprocess.run(
            [*command, "--json", out.name],
            env={**os.environ, "PYTHONPATH": str(source)},
            check=True,
        )
        figures = json.loads(Path(out.name).read_text())["current"]
    return {int(size): value for size, value in figures.items()}


def lane() -> LaneLimits:
    big = BucketSpec("bench:in", 1e12, 1e12)
    return LaneLimits(
        "bench:lane", BucketSpec("bench:req", 1.0, 1e-6), big, BucketSpec("bench:out", 1e12, 1e12)
    )


def ticket(number: int) -> admission.Ticket:
    org = number % MIX["orgs"]
    user = (number // MIX["orgs"]) % MIX["users"]
    return admission.Ticket(
        f"org-{org}",
        f"user-{user}",
        400 + number % 7 * 50,
        320,
        deadline=math.inf,
        expected_output_tokens=256,
        org_weight=1.0 + org % 3,
    )


async def measure(waiting: int, admits: int) -> float:
    """CPU seconds per admit with ``waiting`` calls queued."""
    loop = asyncio.get_running_loop()
    state = MemoryState(loop.time)
    queue = admission.AdmissionQueue(lane(), state, max_concurrency=10**9)
    for streamed in (False, True):  # the lane has timed a reply: waits may be promised
        queue.finished(admission.Ticket("t", "t", 0, 0, deadline=0.0, streamed=streamed), 0.0, 0.0)
    await queue.admit(ticket(-1))  # takes the only request: from now on every call waits
    tasks = [loop.create_task(queue.admit(ticket(number))) for number in range(waiting)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    began = time.process_time()
    for number in range(admits):
        tasks.append(loop.create_task(queue.admit(ticket(waiting + number))))
        await asyncio.sleep(0)  # the admit runs: predicted, queued
        await asyncio.sleep(0)  # the dispatcher it woke looks at the head
    spent = time.process_time() - began
    assert queue.waiting == waiting + admits, (queue.waiting, waiting + admits)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return spent / admits


def measure_here(admits: int) -> dict[int, float]:
    """One round of every size on the package this process imported."""
    return {waiting: asyncio.run(measure(waiting, admits)) for waiting in SIZES}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--admits", type=int, default=2000, help="admits measured per size")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds per size")
    parser.add_argument("--baseline", default=None, help="git revision of the queue to compare with")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--orgs", type=int, default=MIX["orgs"], help="organisations of the waiting calls")
    parser.add_argument("--users", type=int, default=MIX["users"], help="users in each organisation")
    parser.add_argument("--quiet", action="store_true", help="print nothing (a baseline's child process)")
    args = parser.parse_args()
    MIX.update(orgs=args.orgs, users=args.users)
    source = extract_baseline(args.baseline) if args.baseline else None
    rounds: dict[str, list[dict[int, float]]] = {"current": []}
    if source is not None:
        rounds[f"baseline ({args.baseline})"] = []
    for _ in range(args.rounds):
        rounds["current"].append(measure_here(args.admits))
        if source is not None:
            rounds[f"baseline ({args.baseline})"].append(measure_baseline(source, args.admits))
    results = {name: {size: min(r[size] for r in runs) for size in SIZES} for name, runs in rounds.items()}
    if args.json is not None:
        figures_by_arm = {name: {str(size): v for size, v in f.items()} for name, f in results.items()}
        args.json.write_text(json.dumps(figures_by_arm))
    if args.quiet:
        return
    for name, runs in rounds.items():
        for size in SIZES:
            spread = ", ".join(f"{r[size] * 1e3:.4f}" for r in runs)
            print(f"{name:>20}  {size:>6} waiting: best {results[name][size] * 1e3:.4f} ms ({spread})")
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
            ratios = ", ".join(f"{size:,}: {figures[size] / other[size]:.2f}" for size in SIZES)
            print(f"current / {name}, by calls waiting: {ratios}")


if __name__ == "__main__":
    main()
