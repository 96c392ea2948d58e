"""Child processes for the benchmarks: servers started as subprocesses, pinned to CPUs, stopped cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

__all__ = ["Proc", "claudegate", "free_port", "wait_until_up"]


class Proc:
    """A child process, optionally pinned to CPUs with taskset (which execs, so the PID is the server's)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cpus: str | None, log: Path) -> None:
        self.name = name
        self.log = log
        prefix = ["taskset", "-c", cpus] if cpus is not None else []
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                prefix + argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pid = self.popen.pid

    def cpu_ticks(self) -> int:
        """utime + stime of the whole process (every thread), in clock ticks."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return int(fields[11]) + int(fields[12])

    def memory_mb(self, key: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"{key} not in /proc/{self.pid}/status")

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def stop(self) -> int | None:
        return terminate(self.popen, 30)


def terminate(popen: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """Stop a server as an operator would (SIGTERM), killing it if it has not exited in ``timeout_s``."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    return popen.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def claudegate(*args: str) -> list[str]:
    return [sys.executable, "-m", "claudegate", *args]


async def wait_until_up(url: str, proc: Proc, timeout_s: float = 60.0) -> None:
    """Poll ``url`` until the server answers anything at all (a 401 to the key-less probe counts)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited; see {proc.log}:\n{proc.log.read_text()[-3000:]}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url, headers={"x-api-key": "sk-bench-probe"}) as response:
                    await response.read()
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer at {url} within {timeout_s} s; see {proc.log}")
