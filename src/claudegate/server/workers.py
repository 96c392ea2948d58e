"""Several gateway processes on one port: a parent binds the port and starts ``workers`` processes that accept
on it, each a whole gateway with its own event loop and the shutdown of ``run``.

The parent binds one listening socket per worker on the same port (``SO_REUSEPORT``), before any worker
starts, and keeps them open for its whole life: the kernel spreads new connections evenly over the sockets
by a hash of their addresses (one socket shared by all workers would not: the first worker to wake takes
every connection waiting, so a burst of new connections lands on one worker); a worker that is restarted
takes over its socket with the connections waiting in it, so the port never refuses a connection.

The parent does nothing but watch:

- SIGTERM or SIGINT: every worker gets SIGTERM and its own graceful shutdown (calls in flight get
  ``shutdown_grace_s``, then are ended with an error and a usage record); the parent waits for all of them
  and exits 0 if every one did.
- A worker that dies on its own is reported and started again, unless it died within ``_CRASH_LOOP_S`` of
  its start (it cannot start: bad settings, an unreachable database): then the others are shut down and
  the parent exits 1 rather than restart it in a loop.

Workers run in their own process group, so a terminal's Ctrl-C reaches the parent only and each worker gets
exactly one signal; a worker whose parent has gone (killed with SIGKILL) shuts itself down.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from pathlib import Path
from types import FrameType
from typing import Final

from claudegate.config import Settings

__all__ = ["WORKER_HEADER", "run_workers"]

logger = logging.getLogger("claudegate.workers")

WORKER_HEADER: Final = b"x-claudegate-worker"  # which worker (1..N) answered: for operators and benchmarks
_CRASH_LOOP_S: Final = 10.0
_KILL_MARGIN_S: Final = 15.0  # beyond a worker's own shutdown limit, before the parent kills it


def run_workers(settings: Settings, *, config_file: Path | None = None) -> int:
    """Serve with ``settings.workers`` processes until a signal stops them; the exit status (blocking)."""
    listeners = [_bind(settings.host, settings.port) for _ in range(settings.workers)]
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of the parent's state
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    workers: dict[int, tuple[SpawnProcess, float]] = {}

    def start(index: int) -> None:
        process = context.Process(
            target=_worker_main,
            args=(settings, config_file, listeners[index - 1], index, os.getpid()),
            name=f"claudegate-worker-{index}",
            daemon=False,
        )
        process.start()
        workers[index] = (process, time.monotonic())

    status = 0
    try:
        for index in range(1, settings.workers + 1):
            start(index)
        logger.info("%d gateway workers started on %s:%s", settings.workers, settings.host, settings.port)
        while not stopping:
            sentinels = {process.sentinel: index for index, (process, _) in workers.items()}
            for ready in wait(list(sentinels), timeout=0.5):
                index = sentinels[ready]  # type: ignore[index]
                process, started = workers[index]
                process.join()
                if stopping:
                    break
                lived = time.monotonic() - started
                logger.error("gateway worker %d (pid %s) exited: %s", index, process.pid, process.exitcode)
                if lived < _CRASH_LOOP_S:
                    logger.error("worker %d died %.1f s after it started: stopping", index, lived)
                    stopping, status = True, 1
                    break
                start(index)
    finally:
        for listener in listeners:  # the workers' copies stay open until each stops accepting
            listener.close()
        status = max(status, _stop_all(workers, settings))
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


def _stop_all(workers: dict[int, tuple[SpawnProcess, float]], settings: Settings) -> int:
    """SIGTERM to every live worker, then wait for their graceful shutdowns; 1 if any did not end well."""
    for process, _ in workers.values():
        if process.exitcode is None and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + math.ceil(settings.shutdown_grace_s) + _KILL_MARGIN_S
    status = 0
    for index, (process, _) in workers.items():
        process.join(max(0.0, deadline - time.monotonic()))
        if process.exitcode is None:
            logger.error("gateway worker %d did not shut down in time: killed", index)
            process.kill()
            process.join()
        if process.exitcode not in (0, -signal.SIGTERM):
            status = 1
    return status


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener


def _worker_main(
    settings: Settings, config_file: Path | None, listener: socket.socket, index: int, parent: int
) -> None:
    """One worker: a whole gateway on the shared socket."""
    from claudegate.accounting.access_log import configure_logging
    from claudegate.server.run import serve_socket

    os.setpgrp()  # signals come from the parent only (see the module)
    configure_logging(settings.log_level, settings.log_format)
    serve_socket(settings, listener, config_file=config_file, worker=index, parent=parent)
