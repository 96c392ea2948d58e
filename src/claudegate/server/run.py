"""Running the gateway under uvicorn, with the shutdown the gateway wants: on SIGTERM or SIGINT the server
stops accepting calls, the calls in flight get ``shutdown_grace_s`` to finish, and the gateway then ends
what is left itself (each client gets an error it can read, each record keeps what was produced), before the
server's own limit would cancel it unanswered."""

from __future__ import annotations

import math
from pathlib import Path
from types import FrameType
from typing import Final

import uvicorn

from claudegate.config import Settings
from claudegate.server.gateway import Gateway

__all__ = ["run_gateway"]

_SERVER_GRACE_MARGIN_S: Final = 5  # time the gateway's own ending of calls gets before the server cancels


class _GatewayServer(uvicorn.Server):
    """uvicorn's server, telling the gateway when a signal starts the shutdown."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self._gateway = gateway

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            self._gateway.begin_shutdown()
        super().handle_exit(sig, frame)


def run_gateway(settings: Settings, *, config_file: Path | None = None) -> None:
    """Serve until a signal stops the server (blocking); ``config_file`` is reloaded when it changes."""
    gateway = Gateway(settings, config_file=config_file)
    config = uvicorn.Config(
        gateway,
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
    _GatewayServer(config, gateway).run()
