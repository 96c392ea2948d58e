"""The gateway's ASGI application: Anthropic's API in front of an upstream, with keys, metering and metrics.

Routing is a handful of string comparisons rather than a router: it runs on every call of a path
budgeted at half a millisecond of CPU (see ``asgi.py``).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from claudegate.config import Settings
from claudegate.console import console_app
from claudegate.errors import ClaudegateError, InvalidRequestError, MethodNotAllowedError, NotFoundError
from claudegate.keys import Identity, presented_key
from claudegate.pipeline.relay import UpstreamDropped
from claudegate.pipeline.request import CallRequest
from claudegate.pipeline.routing import DEADLINE_HEADER, deadline_for, sticky_key
from claudegate.pipeline.sink import AsgiSink
from claudegate.server import batches as batch_routes
from claudegate.server import chat_routes
from claudegate.server.admin import AdminDeps, admin_routes
from claudegate.server.asgi import header, send_error, send_json
from claudegate.server.call import MAX_BODY_BYTES, GatewayCall, read_json_body
from claudegate.server.health import HealthCheck
from claudegate.server.proxy import forward
from claudegate.server.services import Services, live_upstreams, open_services

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)

Route = Callable[[GatewayCall], Awaitable[object]]


class _QuietUpstreamDrops(logging.Filter):
    """When the upstream cuts a stream, the gateway logs it in one line and cuts the client's connection by
    raising UpstreamDropped to the server; the server's traceback for that exception would only be noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], UpstreamDropped))


def _quiet_upstream_drops() -> None:
    server_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietUpstreamDrops) for f in server_log.filters):
        server_log.addFilter(_QuietUpstreamDrops())


class Gateway:
    """ASGI app. Services open in the lifespan startup and close (flushing usage) at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._services: Services | None = None
        self._admin: Starlette | None = None
        self._console: ASGIApp | None = None
        self._health: HealthCheck | None = None

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("the gateway has not started")
        return self._services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _quiet_upstream_drops()
                try:
                    self._services = await open_services(self.settings)
                    self._health = HealthCheck(self._services)
                    self._admin = _admin_app(self._services)
                    self._console = console_app(self._services, self._admin)
                except Exception as error:
                    logger.exception("the gateway could not start")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                _freeze_startup_objects()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                gc.unfreeze()
                if self._services is not None:
                    await self._services.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        call = GatewayCall(scope, receive, send)
        try:
            if path == "/v1/messages":
                await self._only(call, "POST", self._messages)
            elif path == "/v1/messages/count_tokens":
                await self._only(call, "POST", self._authenticated_pass_through)
            elif path.startswith("/v1/messages/batches"):
                await self._authenticate(call)
                await batch_routes.dispatch(self.services, call)
            elif path == "/v1/models" or path.startswith("/v1/models/"):
                await self._only(call, "GET", self._authenticated_pass_through)
            elif path == "/api/hello":
                await self._only(call, method if method in ("GET", "HEAD") else "GET", self.pass_through)
            elif path == "/console" or path.startswith("/console/"):
                assert self._console is not None
                await self._console(scope, receive, send)
            elif chat_routes.is_chat_path(path):
                await chat_routes.dispatch(self.services, call, self._authenticate)
            elif path == "/metrics":
                await self._metrics(call)
            elif path == "/health":
                await send_json(send, 200, b'{"status":"ok"}')
            elif path == "/health/ready":
                assert self._health is not None
                status, body = await self._health.ready()
                await send_json(send, status, body)
            elif path == "/admin" or path.startswith("/admin/"):
                assert self._admin is not None
                await self._admin(scope, receive, send)
            else:
                raise NotFoundError(f"Not Found: {method} {path} is not a route of this API")
        except ClaudegateError as error:
            await send_error(send, error, call.request_id)

    async def _only(self, call: GatewayCall, method: str, route: Route) -> None:
        if call.scope["method"] != method:
            raise MethodNotAllowedError(call.scope["method"], call.scope["path"], (method,))
        await route(call)

    async def _authenticate(self, call: GatewayCall) -> Identity:
        key = presented_key(
            _text(header(call.scope, b"x-api-key")), _text(header(call.scope, b"authorization"))
        )
        call.identity = await self.services.resolver.resolve(key)
        return call.identity

    async def pass_through(self, call: GatewayCall) -> None:
        if call.scope["method"] in ("POST", "PUT", "PATCH") and call.body is None:
            await read_json_body(call, MAX_BODY_BYTES)
        await forward(call, self.services)

    async def _authenticated_pass_through(self, call: GatewayCall) -> None:
        await self._authenticate(call)
        await self.pass_through(call)

    async def _messages(self, call: GatewayCall) -> None:
        identity = await self._authenticate(call)
        pipeline = self.services.pipeline
        request = CallRequest(
            identity=identity,
            request_id=call.request_id,
            body=b"",
            model=None,
            max_tokens=0,
            deadline=0.0,
            headers=call.scope["headers"],
            path_and_query=call.path_and_query,
            started=call.started,
        )
        try:
            body = await read_json_body(call, MAX_BODY_BYTES)
            self._describe(request, call, body)
        except ClaudegateError as error:
            pipeline.record_refusal(request, error)  # one usage record for every authenticated call
            raise
        except ConnectionResetError:
            pipeline.record_refusal(request, None)
            return
        sink = AsgiSink(call.receive, call.send, [call.id_header])
        sink.watch()
        try:
            await pipeline.run(request, sink)
        finally:
            sink.close()

    def _describe(self, request: CallRequest, call: GatewayCall, body: dict[str, Any]) -> None:
        """What the pipeline needs from the body and headers: model, deadline, priority, stickiness."""
        assert call.body is not None
        settings = self.services.settings
        identity = request.identity
        request.body = call.body
        model = body.get("model")
        request.model = model if isinstance(model, str) else None
        max_tokens = body.get("max_tokens")
        request.max_tokens = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 1
        request.stream = body.get("stream") is True
        requested_s: float | None = None
        deadline_header = header(call.scope, DEADLINE_HEADER)
        if deadline_header is not None:
            try:
                deadline_ms = int(deadline_header)
            except ValueError:
                deadline_ms = 0
            if deadline_ms <= 0:
                raise InvalidRequestError(
                    f"{DEADLINE_HEADER.decode()}: expected a positive whole number of milliseconds"
                )
            requested_s = deadline_ms / 1000
        request.deadline = deadline_for(identity, requested_s, settings.default_deadline_s)
        request.priority = identity.settings.priority
        if len(self.services.pool.members) > 1:
            request.sticky_key = sticky_key(settings.sticky, call.scope["headers"], body)

    async def _metrics(self, call: GatewayCall) -> None:
        services = self.services
        services.metrics.usage_pending.set(services.writer.pending)
        await send_json(
            call.send,
            200,
            services.metrics.render(),
            content_type=b"text/plain; version=0.0.4; charset=utf-8",
        )


def _freeze_startup_objects() -> None:
    """Take what exists once the gateway has started out of the cyclic garbage collector's sight.

    Modules, classes and the open services are over 100,000 objects that live as long as the process, and
    every full collection walks all of them: measured at 50-80 ms on the gateway's machine, a pause for every
    call in flight, every few thousand calls. Frozen (``gc.freeze``), they are skipped, and a collection
    walks only what calls create. Reference counting still frees them; only cyclic garbage among them would
    wait, until the shutdown unfreezes them.
    """
    gc.collect()
    gc.freeze()


def _admin_app(services: Services) -> Starlette:
    deps = AdminDeps(
        store=services.store,
        resolver=services.resolver,
        admin_token=services.settings.admin_token,
        live=lambda: live_upstreams(services),
    )
    return Starlette(routes=[Mount("/admin", routes=admin_routes(deps))])


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None
