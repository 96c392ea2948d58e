"""How long ``claudegate --help`` (and a subcommand's help) takes to print, wall clock and CPU.

Each command runs ``--runs`` times, alternating with the same command of a baseline executable when one is
given (``--baseline /path/to/other/.venv/bin/claudegate``, e.g. another checkout's), so both see the same
machine load; medians are reported. The target is under 0.5 s of wall clock on an idle machine: on a busy one
the CPU time (user + system, from ``os.wait4``) is the steadier figure.

Run from the repository root::

    .venv/bin/python benchmarks/cli_startup.py [--baseline PATH] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

COMMANDS = (["--help"], ["keys", "list", "--help"], ["serve", "--help"], ["config", "show", "--help"])


def measure(executable: str, args: list[str]) -> tuple[float, float] | None:
    """(wall seconds, CPU seconds) of one run; None if the executable has no such command."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [executable, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | {"COLUMNS": "80"},
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        return None
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executable", default=str(Path(".venv/bin/claudegate")), help="claudegate to time")
    parser.add_argument("--baseline", help="another claudegate executable, timed alternately")
    parser.add_argument("--runs", type=int, default=15, help="runs per command (default 15)")
    args = parser.parse_args()
    targets = {"this": args.executable} | ({"baseline": args.baseline} if args.baseline else {})
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| command | executable | wall p50 (s) | CPU p50 (s) |")
    print("|---|---|---|---|")
    for command in COMMANDS:
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        for _ in range(args.runs):
            for name, executable in targets.items():
                run = measure(executable, command)
                if run is not None:
                    samples[name].append(run)
        for name, runs in samples.items():
            if not runs:
                print(f"| claudegate {' '.join(command)} | {name} | n/a | n/a |")
                continue
            wall = statistics.median(run[0] for run in runs)
            cpu = statistics.median(run[1] for run in runs)
            print(f"| claudegate {' '.join(command)} | {name} | {wall:.3f} | {cpu:.3f} |")


if __name__ == "__main__":
    main()
