"""Running the simulator under uvicorn, standalone or inside another process (the embedded upstream)."""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn

from claudegate.simulator.app import create_app
from claudegate.simulator.reply import DroppedConnection
from claudegate.simulator.settings import SimulatorSettings
from claudegate.wire.models import ModelCatalog

__all__ = ["SimulatorServer", "uvicorn_config"]


class _HideDroppedConnections(logging.Filter):
    """A dropped connection is a fault the user asked for, not an error worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


def uvicorn_config(
    settings: SimulatorSettings,
    host: str,
    port: int,
    log_level: str = "warning",
    catalog: ModelCatalog | None = None,
) -> uvicorn.Config:
    logging.getLogger("uvicorn.error").addFilter(_HideDroppedConnections())
    return uvicorn.Config(
        create_app(settings, catalog),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )


class SimulatorServer:
    """A simulator on a loopback port inside the current event loop; ``port=0`` picks a free port."""

    def __init__(
        self,
        settings: SimulatorSettings,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        catalog: ModelCatalog | None = None,
    ) -> None:
        self.settings = settings
        self.host = host
        # proto must say TCP: accepted sockets inherit it, and asyncio sets TCP_NODELAY only on sockets that
        # do. Without it a reply's headers and body (two writes) wait out Nagle and delayed ACK: ~40 ms.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(settings, host, self.port, catalog=catalog))
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server.config.setup_event_loop = lambda: None  # type: ignore[method-assign]
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
