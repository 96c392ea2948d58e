"""The gateway's ASGI application: Anthropic's API in front of an upstream, with keys, metering and metrics.

Routing is a handful of string comparisons rather than a router: it runs on every call of a path
budgeted at half a millisecond of CPU (see ``asgi.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from claudegate.accounting.prices import UsageTokens
from claudegate.accounting.usage import UsageRecord
from claudegate.config import Settings
from claudegate.errors import ClaudegateError, MethodNotAllowedError, NotFoundError
from claudegate.keys import Identity, presented_key
from claudegate.server import batches as batch_routes
from claudegate.server.admin import AdminDeps, admin_routes
from claudegate.server.asgi import header, send_error, send_json
from claudegate.server.call import MAX_BODY_BYTES, GatewayCall, read_json_body
from claudegate.server.health import HealthCheck
from claudegate.server.proxy import ClientGone, ForwardResult, UpstreamDropped, forward
from claudegate.server.services import Services, open_services

__all__ = ["Gateway"]

_CLIENT_CLOSED = 499  # the status usage records use for a call its client abandoned (nginx's convention)

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
                except Exception as error:
                    logger.exception("the gateway could not start")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
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

    async def pass_through(self, call: GatewayCall, result: ForwardResult | None = None) -> ForwardResult:
        services = self.services
        if call.scope["method"] in ("POST", "PUT", "PATCH") and call.body is None:
            await read_json_body(call, MAX_BODY_BYTES)
        return await forward(call, services.session, services.upstream, result=result)

    async def _authenticated_pass_through(self, call: GatewayCall) -> None:
        await self._authenticate(call)
        await self.pass_through(call)

    async def _messages(self, call: GatewayCall) -> None:
        identity = await self._authenticate(call)
        services = self.services
        metrics = services.metrics
        result = ForwardResult()
        model: str | None = None
        metrics.in_flight.inc()
        try:
            body = await read_json_body(call, MAX_BODY_BYTES)
            requested = body.get("model") if isinstance(body, dict) else None
            model = requested if isinstance(requested, str) else None
            # The result is filled in as the reply passes, so a stream cut short still has its usage.
            await self.pass_through(call, result)
        # Upstream errors reach the metrics once, through _account, whichever way the call failed.
        except ClaudegateError as error:
            result.status, result.error_type = error.status, error.error_type
            raise
        except ClientGone:
            result.status, result.error_type, result.client_gone = _CLIENT_CLOSED, "client_disconnected", True
        except UpstreamDropped as error:
            logger.warning(
                "upstream %s cut a reply short (%s); cutting the client's connection too (request %s)",
                services.upstream.name,
                error,
                call.request_id,
            )
            raise
        except ConnectionResetError:
            result.status, result.error_type = _CLIENT_CLOSED, "client_disconnected"
        finally:
            metrics.in_flight.dec()
            self._account(call, identity, result, result.model or model)

    def _account(
        self, call: GatewayCall, identity: Identity, result: ForwardResult, model: str | None
    ) -> None:
        services = self.services
        usage = result.usage
        finished = time.perf_counter()
        status = result.status or 502
        tokens = UsageTokens(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            cache_creation_1h_input_tokens=usage.cache_creation_1h_input_tokens,
        )
        cost = services.prices.cost(model, tokens, batch=False) if model else None
        if result.error_type is None and status >= 400:
            result.error_type = "api_error"
        services.writer.submit(
            UsageRecord(
                request_id=call.request_id,
                model=model,
                status=status,
                upstream_request_id=result.upstream_request_id,
                org_id=identity.org_id,
                user_id=identity.user_id,
                key_id=identity.key_id,
                upstream=services.upstream.name,
                error_type=result.error_type,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_creation_input_tokens=usage.cache_creation_input_tokens,
                cache_read_input_tokens=usage.cache_read_input_tokens,
                cache_creation_1h_input_tokens=usage.cache_creation_1h_input_tokens,
                cost_usd=cost,
                latency_ms=(finished - call.started) * 1000,
                ttft_ms=(result.first_token_at - call.started) * 1000 if result.first_token_at else None,
                streamed=result.streamed,
            )
        )
        services.metrics.observe(
            status=status,
            model=model or "unknown",
            org=identity.org_name,
            streamed=result.streamed,
            seconds=finished - call.started,
            ttft_seconds=(result.first_token_at - call.started) if result.first_token_at else None,
            tokens=tokens,
            cost=cost,
            upstream=services.upstream.name,
            upstream_error=result.error_type
            if status >= 500 or result.error_type == "incomplete_stream"
            else None,
        )

    async def _metrics(self, call: GatewayCall) -> None:
        services = self.services
        services.metrics.usage_pending.set(services.writer.pending)
        await send_json(
            call.send,
            200,
            services.metrics.render(),
            content_type=b"text/plain; version=0.0.4; charset=utf-8",
        )


def _admin_app(services: Services) -> Starlette:
    deps = AdminDeps(
        store=services.store, resolver=services.resolver, admin_token=services.settings.admin_token
    )
    return Starlette(routes=[Mount("/admin", routes=admin_routes(deps))])


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None
