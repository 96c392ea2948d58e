"""The gateway's ASGI application: Anthropic's API in front of an upstream, with keys, metering and metrics.

Routing is a handful of string comparisons rather than a router: it runs on every call of a path
budgeted at half a millisecond of CPU (see ``claudegate.runtime.asgi``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from claudegate._version import __version__
from claudegate.config import Settings
from claudegate.console import console_app
from claudegate.errors import (
    SHUTTING_DOWN,
    ClaudegateError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    OverloadedError,
)
from claudegate.keys import Identity, presented_key
from claudegate.pipeline.describe import MAX_BODY_BYTES, bare_call, describe_call
from claudegate.pipeline.policies import with_model
from claudegate.pipeline.relay import UpstreamDropped
from claudegate.pipeline.request import CallRequest
from claudegate.pipeline.sink import AsgiSink
from claudegate.reload import Reloader, ReloadRefusedError
from claudegate.runtime import batches as batch_routes
from claudegate.runtime import files as file_routes
from claudegate.runtime.asgi import header, send_error, send_json
from claudegate.runtime.call import GatewayCall, read_json_body, read_raw_body
from claudegate.runtime.closing import finish_within
from claudegate.runtime.proxy import forward
from claudegate.runtime.services import Services, open_services
from claudegate.server import chat_routes, openai_routes
from claudegate.server.admin import AdminDeps, admin_routes
from claudegate.server.admin_usage import live_upstreams
from claudegate.server.compression import compressing
from claudegate.server.health import HealthCheck
from claudegate.server.openapi import openapi_json
from claudegate.wire.paths import MODEL_ID, canonical_path, safe_query, valid_id
from claudegate.wire.sse import error_tail

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)

Route = Callable[[GatewayCall], Awaitable[object]]

_OPERATIONS = frozenset({"/metrics", "/health", "/health/ready", "/openapi.json"})

_UPSTREAM_CUT = "claudegate: the upstream closed the connection before its reply was complete; retry the call"


class _QuietUpstreamDrops(logging.Filter):
    """When the upstream cuts a reply another route relays, the gateway logs it in one line and cuts the
    client's connection by raising UpstreamDropped to the server; the server's traceback for that exception
    would only be noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], UpstreamDropped))


def _quiet_upstream_drops() -> None:
    server_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietUpstreamDrops) for f in server_log.filters):
        server_log.addFilter(_QuietUpstreamDrops())


class Gateway:
    """ASGI app. Services open in the lifespan startup and close (flushing usage) at shutdown."""

    def __init__(self, settings: Settings, config_file: Path | None = None) -> None:
        self.settings = settings
        self._config_file = config_file
        self._reloader: Reloader | None = None
        self._services: Services | None = None
        self._admin: Starlette | None = None
        self._console: ASGIApp | None = None
        self._health: HealthCheck | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle = compressing(self._http, MAX_BODY_BYTES) if settings.compress_replies else self._http

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("the gateway has not started")
        return self._services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loop = asyncio.get_running_loop()
                _quiet_upstream_drops()
                try:
                    self._services = await open_services(self.settings)
                    self._health = HealthCheck(self._services)
                    self._reloader = Reloader(
                        self._services, self._config_file, poll_s=self.settings.config_poll_s
                    )
                    self._reloader.start()
                    self._admin = _admin_app(self._services, self._reloader)
                    self._console = console_app(self._services, self._admin)
                except Exception as error:
                    logger.exception("the gateway could not start")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                _freeze_startup_objects()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                gc.unfreeze()
                # Bounded, each (see runtime.closing): the process must end before its supervisor kills it.
                if self._reloader is not None:
                    await finish_within("the configuration reloader", self._reloader.stop(), 0.5)
                if self._services is not None:
                    await self._services.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        call = GatewayCall(scope, receive, send)
        try:
            if "\x00" in path or b"%00" in scope["query_string"] or b"\x00" in scope["query_string"]:
                # Ids and names in paths and queries are looked up in the database, which (PostgreSQL) cannot
                # even compare a NUL character: no route takes one.
                raise InvalidRequestError("The URL contains a NUL character (%00); remove it")
            if path.startswith("/v1/") or chat_routes.is_chat_path(path):
                path = self._checked_path(call)
            if path == "/v1/messages":
                await self._only(call, "POST", self._messages)
            elif path == "/v1/chat/completions":
                await openai_routes.chat_completions(call, self.services, self._authenticate)
            elif path == "/v1/messages/count_tokens":
                await self._only(call, "POST", self._count_tokens)
            elif path.startswith("/v1/messages/batches"):
                await self._authenticate(call)
                await batch_routes.dispatch(self.services, call)
            elif path == "/v1/models" or path.startswith("/v1/models/"):
                if openai_routes.wants_openai_models(call):  # OpenAI's SDKs send no anthropic-version
                    await openai_routes.models(call, self._authenticate)
                else:
                    await self._only(call, "GET", self._model)
            elif path == "/v1/files" or path.startswith("/v1/files/"):
                await self._authenticate(call)
                await file_routes.dispatch(self.services, call)
            elif path == "/api/hello":
                await self._only(call, method if method in ("GET", "HEAD") else "GET", self.pass_through)
            elif path == "/console" or path.startswith("/console/"):
                assert self._console is not None
                await self._console(scope, receive, send)
            elif chat_routes.is_chat_path(path):
                await chat_routes.dispatch(self.services, call, self._authenticate)
            elif path in _OPERATIONS:
                await self._operations(call, path)
            elif path.startswith("/admin/"):  # "/admin" itself is no route: the else below answers it
                assert self._admin is not None
                await self._admin(scope, receive, send)
            elif path.startswith("/v1/") and self.settings.pass_unknown_routes:
                await self._unknown_route(call)
            else:
                raise NotFoundError(f"Not Found: {method} {path} is not a route of this API")
        except ClaudegateError as error:
            await send_error(send, error, call.request_id)

    async def _operations(self, call: GatewayCall, path: str) -> None:
        """Health, metrics and this API's description: reads, which other methods cannot change (405)."""
        if call.scope["method"] not in ("GET", "HEAD"):
            raise MethodNotAllowedError(call.scope["method"], path, ("GET", "HEAD"))
        if path == "/metrics":
            await self._metrics(call)
        elif path == "/health":
            await send_json(call.send, 200, b'{"status":"ok"}')
        elif path == "/openapi.json":
            await send_json(call.send, 200, openapi_json(__version__))
        else:
            assert self._health is not None
            status, body = await self._health.ready()
            await send_json(call.send, status, body)

    def _checked_path(self, call: GatewayCall) -> str:
        """The path, once every segment of it is known to be a plain name (``wire.paths``); else 404."""
        scope = call.scope
        path = canonical_path(scope)
        if path is None:
            raise NotFoundError(f"Not Found: {scope['method']} {scope['path']!r} is not a route of this API")
        if path != scope["path"]:  # a trailing slash dropped, or letters that were percent-encoded
            query = scope.get("query_string", b"")
            scope["path"] = path  # the routes below read it: now the same decoded or encoded
            call.path_and_query = path + ("?" + safe_query(query) if query else "")
        return path

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

    async def _count_tokens(self, call: GatewayCall) -> None:
        """A pass-through, in which a model policy is counted as its first model; the files the request
        cites must be the caller's (a count tells a size)."""
        identity = await self._authenticate(call)
        body = await read_json_body(call, MAX_BODY_BYTES)
        model = body.get("model")
        chain = self.services.policies.chain(model) if isinstance(model, str) else None
        if chain is not None and call.body is not None:
            call.body = with_model(call.body, chain[0])
        await file_routes.check_cited_files(self.services, identity.org_id, body)
        await forward(call, self.services)

    async def _model(self, call: GatewayCall) -> None:
        await self._authenticate(call)
        model_id = call.scope["path"][len("/v1/models/") :]
        if call.scope["path"] != "/v1/models" and not valid_id(MODEL_ID, model_id):
            raise NotFoundError(f"model: {model_id}")
        await self.pass_through(call)

    async def _unknown_route(self, call: GatewayCall) -> None:
        """A ``/v1`` route the gateway does not know (an endpoint newer than it): relayed with the client's
        key swapped for the upstream's, its body and reply unchanged, and not metered (nothing but Messages
        produces tokens; a new kind of call that does gets a route of its own)."""
        await self._authenticate(call)
        method = call.scope["method"]
        body = await read_raw_body(call, MAX_BODY_BYTES)
        if body is None and method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            call.body = b""  # an empty body still says so (content-length: 0)
        await forward(call, self.services)

    async def _messages(self, call: GatewayCall) -> None:
        identity = await self._authenticate(call)
        services = self.services
        request: CallRequest | None = None  # the usage record of a refusal says what is known of the call
        body: dict[str, Any] | None = None
        try:
            body = await read_json_body(call, MAX_BODY_BYTES)
            assert call.body is not None
            request = describe_call(
                body,
                call.body,
                identity=identity,
                settings=services.settings,
                policies=services.policies,
                upstreams=len(services.pool.members),
                headers=call.scope["headers"],
                request_id=call.request_id,
                path_and_query=call.path_and_query,
                started=call.started,
            )
            await file_routes.check_cited_files(services, identity.org_id, body)
        except ClaudegateError as error:
            # One usage record for every authenticated call.
            services.pipeline.record_refusal(request or self._bare(call, identity, body), error)
            raise
        except ConnectionResetError:
            services.pipeline.record_refusal(request or self._bare(call, identity, body), None)
            return
        self.services.payloads.submit(request)
        sink = AsgiSink(call.receive, call.send, [call.id_header])
        sink.watch()
        self.services.calls.add(sink)
        try:
            try:
                await self.services.cached_calls.run(request, body, sink)
            except UpstreamDropped:
                # The upstream cut a stream the client was reading: end it as Anthropic ends a failed one.
                await sink.send(error_tail("api_error", _UPSTREAM_CUT, after=sink.last_bytes), more=False)
                return
            if sink.shut_down:
                if not sink.started:
                    raise OverloadedError(SHUTTING_DOWN)
                if not sink.ended:
                    await sink.send(
                        error_tail("overloaded_error", SHUTTING_DOWN, after=sink.last_bytes), more=False
                    )
        finally:
            self.services.calls.discard(sink)
            sink.close()

    def begin_shutdown(self) -> None:
        """Shutdown has begun (the server stops accepting calls): calls still running ``shutdown_grace_s``
        from now are stopped, each answered with an error (a stream ends with an ``error`` event), their
        usage records keeping what they produced. Safe to call from a signal handler's thread."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(
                loop.call_later, self.settings.shutdown_grace_s, self._stop_calls_in_flight
            )

    def _stop_calls_in_flight(self) -> None:
        calls = self._services.calls if self._services is not None else set()
        if calls:
            logger.warning("shutdown: stopping %d calls still in flight", len(calls))
        for sink in list(calls):
            sink.stop_for_shutdown()

    def _bare(self, call: GatewayCall, identity: Identity, fields: Mapping[str, Any] | None) -> CallRequest:
        return bare_call(
            identity,
            call.request_id,
            fields=fields,
            policies=self.services.policies,
            headers=call.scope["headers"],
            path_and_query=call.path_and_query,
            started=call.started,
        )

    async def _metrics(self, call: GatewayCall) -> None:
        services = self.services
        services.metrics.usage_pending.set(services.writer.pending)
        services.metrics.set_state(services.pipeline.queue_states(), services.pipeline.breaker_states())
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


def _admin_app(services: Services, reloader: Reloader) -> Starlette:
    async def reload() -> dict[str, Any]:
        try:
            outcome = await reloader.reload("admin API")
        except ReloadRefusedError as refused:
            raise InvalidRequestError(f"configuration refused, the running one stays: {refused}") from None
        return {"reloaded": True, "changed": outcome.changed, "restart_needed": outcome.restart_needed}

    deps = AdminDeps(
        store=services.store,
        resolver=services.resolver,
        admin_token=services.settings.admin_token,
        reload=reload,
        live=lambda: live_upstreams(services),
    )
    return Starlette(routes=[Mount("/admin", routes=admin_routes(deps))])


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None
