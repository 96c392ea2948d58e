"""Running the gateway under uvicorn, with the shutdown the gateway wants: on SIGTERM or SIGINT the server
stops accepting calls, the calls in flight get ``shutdown_grace_s`` to finish, and the gateway then ends
what is left itself (each client gets an error it can read, each record keeps what was produced), before the
server's own limit would cancel it unanswered. With ``workers`` above 1, ``workers.run_workers`` runs this in
each worker process (``serve_socket``), on the socket its parent bound."""

from __future__ import annotations

import math
import os
import signal
import socket
from pathlib import Path
from types import FrameType
from typing import Final

import uvicorn
from starlette.types import Message, Receive, Scope, Send

from claudegate.config import Settings
from claudegate.server.gateway import Gateway

__all__ = ["run_gateway", "serve_socket"]

_SERVER_GRACE_MARGIN_S: Final = 5  # time the gateway's own ending of calls gets before the server cancels


class _GatewayServer(uvicorn.Server):
    """uvicorn's server, telling the gateway when a signal starts the shutdown."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway, *, parent: int | None = None) -> None:
        super().__init__(config)
        self._gateway = gateway
        self._parent = parent

    async def on_tick(self, counter: int) -> bool:
        # A worker whose parent is gone (killed outright) shuts down rather than serve unsupervised.
        if self._parent is not None and counter % 10 == 0 and os.getppid() != self._parent:
            self.handle_exit(signal.SIGTERM, None)
        return await super().on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            self._gateway.begin_shutdown()
        super().handle_exit(sig, frame)


def run_gateway(settings: Settings, *, config_file: Path | None = None) -> int:
    """Serve until a signal stops the server (blocking); ``config_file`` is reloaded when it changes. The
    exit status: with several workers, 1 when one could not run (see ``workers``)."""
    if settings.workers > 1:
        from claudegate.server.workers import run_workers

        return run_workers(settings, config_file=config_file)
    gateway = Gateway(settings, config_file=config_file)
    _GatewayServer(_config(gateway, settings), gateway).run()
    return 0


def serve_socket(
    settings: Settings, listener: socket.socket, *, config_file: Path | None, worker: int, parent: int
) -> None:
    """One worker of several: serve on ``listener`` (bound by the parent ``parent``), saying in a header of
    every reply which worker answered."""
    gateway = Gateway(settings, config_file=config_file)
    app = _WorkerTag(gateway, worker)
    _GatewayServer(_config(app, settings), gateway, parent=parent).run(sockets=[listener])


class _WorkerTag:
    """The gateway, with ``x-claudegate-worker: N`` on every reply."""

    __slots__ = ("_app", "_header")

    def __init__(self, app: Gateway, worker: int) -> None:
        from claudegate.server.workers import WORKER_HEADER

        self._app = app
        self._header = (WORKER_HEADER, str(worker).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        header = self._header

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self._app(scope, receive, tagged)


def _config(app: Gateway | _WorkerTag, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # configure_logging (claudegate serve): one format for every line
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s) + _SERVER_GRACE_MARGIN_S,
    )
