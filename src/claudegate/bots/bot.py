"""A chat bot assembled: transport, outbox, question service, metrics and health, started and stopped
together. ``twitch.py`` builds one for ``claudegate bot twitch``; tests and the benchmark build their own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from claudegate.bots.answerer import Answerer
from claudegate.bots.health import Health, HealthServer, assess
from claudegate.bots.metrics import BotMetrics
from claudegate.bots.outbox import Line, Outbox
from claudegate.bots.service import QuestionService
from claudegate.bots.transport import ChatTransport
from claudegate.config import BotSettings

__all__ = ["ChatBot"]

logger = logging.getLogger(__name__)


class ChatBot:
    def __init__(
        self,
        settings: BotSettings,
        transport: ChatTransport,
        answerer: Answerer,
        *,
        metrics: BotMetrics | None = None,
        serve_health: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        clock = clock or _loop_time
        self.settings = settings
        self.transport = transport
        self.metrics = metrics or BotMetrics(clock=clock, window_s=settings.health_window_s)
        self.outbox = Outbox(
            transport,
            limit=settings.message_limit,
            window_s=settings.message_window_s,
            duplicate_window_s=settings.duplicate_window_s,
            clock=clock,
            on_sent=self._line_sent,
            on_dropped=self._line_dropped,
        )
        self.service = QuestionService(settings, answerer, self.outbox, metrics=self.metrics, clock=clock)
        self.health_server: HealthServer | None = None
        if serve_health and settings.metrics_port is not None:
            self.health_server = HealthServer(
                self.metrics, self.health, host=settings.metrics_host, port=settings.metrics_port
            )
        metrics_ = self.metrics
        metrics_.pending.set_function(lambda: self.service.pending)
        metrics_.outbox_backlog.set_function(lambda: self.outbox.backlog)
        metrics_.connected.set_function(lambda: 1.0 if self.transport.connected else 0.0)
        metrics_.health.set_function(lambda: self.health().status.level)
        self._tasks: list[asyncio.Task[None]] = []

    def health(self) -> Health:
        return assess(
            connected=self.transport.connected,
            queue_use=self.service.queue_use,
            error_rate=self.metrics.error_rate(),
            settings=self.settings,
            standing=self.service.standing,
            lines_per_window=self.outbox.window.limit,
            note=self.service.limit_note,
        )

    def _line_sent(self, line: Line) -> None:
        self.metrics.lines_sent.labels(line.kind).inc()

    def _line_dropped(self, line: Line, reason: str) -> None:
        self.metrics.lines_dropped.labels(reason).inc()
        self.service.forget(line)

    async def start(self, *, connect_timeout: float | None = None) -> None:
        """Start everything; with ``connect_timeout``, wait until joined to the channel."""
        if self.health_server is not None:
            await self.health_server.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.transport.run(self.service), name="bot-chat"),
            loop.create_task(self.outbox.run(), name="bot-outbox"),
        ]
        for task in self._tasks:
            task.add_done_callback(_report_crash)
        note = self.service.limit_note
        if self.settings.moderator is None and self.settings.messages_per_window is None:
            logger.info(
                "pacing at %d lines per %g s until Twitch reports the bot's standing in the channel",
                self.outbox.window.limit,
                self.settings.message_window_s,
            )
        elif note is not None:
            logger.warning("%s", note)  # set so: Twitch's report will not change it
        if connect_timeout is not None:
            await asyncio.wait_for(self.transport.wait_connected(), timeout=connect_timeout)

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop taking questions, finish (or apologise for) the accepted ones within the grace period, then
        leave the chat."""
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        try:
            await self.service.shutdown(grace)
        finally:
            await self.transport.close()
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._tasks = []
            if self.health_server is not None:
                await self.health_server.stop()


def _loop_time() -> float:
    """The running event loop's clock: what the bot's timers wait on, so tests can move it."""
    return asyncio.get_running_loop().time()


def _report_crash(task: asyncio.Task[None]) -> None:
    """The chat loop and the outbox run until stopped; if one ends otherwise, say so loudly."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        logger.critical("the bot's %s task failed: the bot is not working", task.get_name(), exc_info=error)
