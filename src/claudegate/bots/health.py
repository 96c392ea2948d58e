"""Whether the bot is healthy, and the HTTP endpoints that say so (``/health``) and export its metrics
(``/metrics``).

    unhealthy   not joined to the chat, or queue use or error rate at or above the "unhealthy" thresholds
    degraded    queue use or error rate at or above the "degraded" thresholds
    healthy     otherwise

Queue use is the fuller of: accepted questions against ``max_pending``, and chat lines waiting against one
window's message allowance. The error rate is the share of accepted questions not answered over the last
``health_window_s``. ``/health`` answers 200 for healthy and degraded, 503 for unhealthy, with the figures
as JSON, the bot's standing in the channel as Twitch reported it, the lines it allows itself per window and,
when that is a plain account's limit, a sentence on what it costs viewers.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import orjson
from aiohttp import web

from claudegate.bots.metrics import BotMetrics
from claudegate.bots.standing import Standing
from claudegate.config import BotSettings

__all__ = ["Health", "HealthServer", "HealthStatus", "assess"]

logger = logging.getLogger(__name__)


class HealthStatus(StrEnum):
    healthy = "healthy"
    degraded = "degraded"
    unhealthy = "unhealthy"

    @property
    def level(self) -> int:
        return {"healthy": 0, "degraded": 1, "unhealthy": 2}[self.value]


@dataclass(frozen=True, slots=True)
class Health:
    status: HealthStatus
    connected: bool
    queue_use: float
    error_rate: float
    reasons: tuple[str, ...] = ()
    standing: Standing | None = None  # as Twitch reported it; None until it has
    lines_per_window: int | None = None
    note: str | None = None  # what the message limit costs viewers, when it is the low one

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "status": self.status.value,
                "connected": self.connected,
                "queue_use": round(self.queue_use, 4),
                "error_rate": round(self.error_rate, 4),
                "reasons": list(self.reasons),
                "standing": self.standing.value if self.standing is not None else None,
                "lines_per_window": self.lines_per_window,
                "note": self.note,
            }
        )


def assess(
    *,
    connected: bool,
    queue_use: float,
    error_rate: float,
    settings: BotSettings,
    standing: Standing | None = None,
    lines_per_window: int | None = None,
    note: str | None = None,
) -> Health:
    reasons: list[str] = []
    status = HealthStatus.healthy
    if not connected:
        reasons.append("not connected to the chat")
        status = HealthStatus.unhealthy
    for value, degraded, unhealthy, what in (
        (queue_use, settings.degraded_queue_use, settings.unhealthy_queue_use, "queue use"),
        (error_rate, settings.degraded_error_rate, settings.unhealthy_error_rate, "error rate"),
    ):
        if value >= unhealthy:
            reasons.append(f"{what} {value:.0%} ≥ {unhealthy:.0%}")
            status = HealthStatus.unhealthy
        elif value >= degraded:
            reasons.append(f"{what} {value:.0%} ≥ {degraded:.0%}")
            if status is HealthStatus.healthy:
                status = HealthStatus.degraded
    return Health(status, connected, queue_use, error_rate, tuple(reasons), standing, lines_per_window, note)


class HealthServer:
    """``GET /health`` and ``GET /metrics`` on their own port (aiohttp, in the bot's event loop)."""

    def __init__(self, metrics: BotMetrics, health: Callable[[], Health], *, host: str, port: int) -> None:
        self._metrics = metrics
        self._health = health
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port = port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._get_health)
        app.router.add_get("/metrics", self._get_metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # Bound here, so that port 0 (any free port) can be read back.
        sock = socket.create_server((self._host, self._port), reuse_port=False)
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        logger.info("bot health and metrics on http://%s:%d/", self._host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _get_health(self, _request: web.Request) -> web.Response:
        health = self._health()
        status = 503 if health.status is HealthStatus.unhealthy else 200
        return web.Response(body=health.to_json(), status=status, content_type="application/json")

    async def _get_metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics.exposition(),
            headers={"content-type": "text/plain; version=0.0.4; charset=utf-8"},
        )
