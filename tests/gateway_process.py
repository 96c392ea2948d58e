"""``claudegate serve`` as a real process on a free loopback port, for tests of what an operator sees: its
log lines, its /metrics scraped by Prometheus, its traces, the README's commands, an installed wheel."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunningGateway", "free_port", "gateway_env", "running_gateway", "wait_for_http"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def gateway_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a gateway of its own: none of the caller's claudegate or Anthropic variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDEGATE_", "ANTHROPIC_", "OTEL_"))}
    return env | {"CLAUDEGATE_HOME": str(home), "CLAUDEGATE_USAGE_FLUSH_INTERVAL_S": "0.05"} | extra


def wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 30.0) -> None:
    """Poll ``url`` until it answers 200 (the server is up), failing at once if the process exits."""
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)  # readiness polling of another process, not a wait for behaviour under test
    raise RuntimeError(f"the server did not answer {url} within {timeout_s} s:\n{log.read_text()}")


@dataclass
class RunningGateway:
    url: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> str:
        """Stop it as an operator would (SIGTERM) and return everything it logged."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.log.read_text()


@contextmanager
def running_gateway(
    env: dict[str, str], workdir: Path, argv: list[str] | None = None, *, cwd: Path | None = None
) -> Iterator[RunningGateway]:
    """``claudegate serve`` (or ``argv`` + serve's options) on a free port until the block ends."""
    port = free_port()
    log = workdir / f"gateway-{port}.log"
    command = [*(argv or [sys.executable, "-m", "claudegate"]), "serve", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd or workdir)
    gateway = RunningGateway(f"http://127.0.0.1:{port}", port, log, process)
    try:
        wait_for_http(f"{gateway.url}/health", process, log)
        yield gateway
    finally:
        gateway.stop()
