"""The web console at ``/console``: one page (HTML, JS and CSS shipped in the package, nothing from a CDN)
that reads and changes everything through the gateway's own APIs.

    GET  /console                         the page (it asks /console/api/me who is signed in)
    GET  /console/static/…                its script, style sheet and icon
    POST /console/sign-in   {"token"}     the admin token (operator) or a gateway key (member of its org)
    POST /console/sign-out
    GET  /console/api/me                  role, organisation, CSRF token, models
    *    /console/api/admin/…             the admin API (``/admin/…``), as the session allows
    *    /console/api/chat…, …/chats…     the chat API (``/chat/stream``…), as the session's key

Every call but sign-in needs the session cookie; every change also needs the session's CSRF token in
``x-csrf-token``. Sign-in takes JSON only, which a cross-site form cannot send. The console forwards to the
admin API in-process with the admin token, so an operator's reads and changes are the CLI's, and to the
chat API with the member's key (an operator picks a key of the organisation to chat as).
"""

from __future__ import annotations

import hmac
import logging
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from claudegate.console.policy import member_request
from claudegate.console.session import COOKIE, CSRF_HEADER, Session, SessionCodec
from claudegate.errors import (
    AuthenticationError,
    ClaudegateError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    PermissionDeniedError,
)
from claudegate.keys import Identity, StoredKey, hash_key
from claudegate.runtime.asgi import send_error
from claudegate.runtime.call import GatewayCall
from claudegate.server import chat_routes
from claudegate.wire.models import default_catalog

if TYPE_CHECKING:
    from claudegate.runtime.services import Services

__all__ = ["console_app"]

logger = logging.getLogger(__name__)

_STATIC = resources.files("claudegate.console").joinpath("static")
_SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
KEY_HEADER = "x-console-key-id"  # the key an operator chats as in the playground


def console_app(services: Services, admin: ASGIApp) -> Router:
    """The console's routes, under ``/console``; ``admin`` is the gateway's admin API application."""
    console = _Console(services, admin)
    return Router(
        routes=[
            Route("/console", console.page),
            Route("/console/", console.page),
            Route("/console/sign-in", console.sign_in, methods=["POST"]),
            Route("/console/sign-out", console.sign_out, methods=["POST"]),
            Route("/console/api/me", console.me),
            Route("/console/api/admin/{path:path}", console.admin),
            Route("/console/api/{path:path}", console.chat),
            Mount("/console/static", _StaticFiles(directory=str(_STATIC))),
            Route("/console/{path:path}", console.not_found),
        ]
    )


class _Console:
    """The endpoints. Admin and chat calls are plain ASGI apps (they forward the call with its stream)."""

    __slots__ = ("_admin", "_codec", "_models", "_services", "admin", "chat")

    def __init__(self, services: Services, admin: ASGIApp) -> None:
        self._services = services
        self._admin = admin
        settings = services.settings
        self._codec = SessionCodec.from_settings(settings.console_secret, settings.admin_token)
        self._models = [model.id for model in default_catalog().models]
        self.admin = _Forward(self, self._forward_admin)
        self.chat = _Forward(self, self._forward_chat)

    # -- pages and sessions -------------------------------------------------------------------------------

    async def page(self, _request: Request) -> Response:
        return FileResponse(str(_STATIC.joinpath("index.html")), headers=_SECURITY_HEADERS)

    async def not_found(self, request: Request) -> Response:
        return _error(NotFoundError(f"no console page {request.url.path}"))

    async def sign_in(self, request: Request) -> Response:
        try:
            codec = self._require_codec()
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                raise InvalidRequestError('sign in with a JSON body {"token": "..."}')
            try:
                body = orjson.loads(await request.body())
            except orjson.JSONDecodeError:
                raise InvalidRequestError('sign in with a JSON body {"token": "..."}') from None
            token = body.get("token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token.strip():
                raise InvalidRequestError("token: the admin token or a gateway key")
            session = await self._session_for(token.strip())
        except ClaudegateError as exc:
            return _error(exc)
        response = _json({"role": session.role})
        response.set_cookie(
            COOKIE,
            codec.dumps(session),
            max_age=codec.max_age_s,
            path="/console",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def _session_for(self, token: str) -> Session:
        admin_token = self._services.settings.admin_token
        if admin_token is not None and hmac.compare_digest(
            token.encode(), admin_token.get_secret_value().encode()
        ):
            return Session.operator()
        await self._services.resolver.resolve(token)  # AuthenticationError for an unknown or revoked key
        return Session.member(hash_key(token))

    async def sign_out(self, request: Request) -> Response:
        try:
            await self.checked(request.cookies.get(COOKIE), request.method, request.headers.get(CSRF_HEADER))
        except ClaudegateError as exc:
            return _error(exc)
        response = _json({"signed_out": True})
        response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
        return response

    async def me(self, request: Request) -> Response:
        try:
            session, member = await self.checked(request.cookies.get(COOKIE), "GET", None)
        except ClaudegateError as exc:
            return _error(exc)
        identity = member.identity if member is not None else None
        return _json(
            {
                "role": session.role,
                "csrf": session.csrf,
                "org": identity.org_name if identity else None,
                "user": identity.user_name if identity else None,
                "key": identity.key_name if identity else None,
                "models": self._models,
                "chat_model": self._services.settings.chat_model,
            }
        )

    def _require_codec(self) -> SessionCodec:
        if self._codec is None:
            raise PermissionDeniedError("the console is disabled until CLAUDEGATE_ADMIN_TOKEN is set")
        return self._codec

    async def checked(
        self, cookie: str | None, method: str, csrf: str | None
    ) -> tuple[Session, StoredKey | None]:
        """The session of a call (and a member's key, still active), checking the CSRF token of a change."""
        session = self._require_codec().loads(cookie)
        if session is None:
            raise AuthenticationError("sign in to the console first (the session is missing or has expired)")
        if method not in ("GET", "HEAD") and not session.csrf_matches(csrf):
            raise PermissionDeniedError(
                f"a change needs the session's CSRF token in the {CSRF_HEADER} header"
            )
        member = None
        if session.key_hash is not None:
            member = await self._services.store.keys.find_active_key(session.key_hash)
            if member is None:
                raise AuthenticationError(
                    "the key this session signed in with has been revoked; sign in again"
                )
        return session, member

    # -- forwarding ---------------------------------------------------------------------------------------

    async def _forward_admin(
        self, scope: Scope, receive: Receive, send: Send, session: Session, member: StoredKey | None
    ) -> None:
        path = "/" + scope["path_params"]["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        if member is not None:
            query = member_request(scope["method"], path, query, member.identity.org_name)
        token = self._services.settings.admin_token
        if token is None:
            raise PermissionDeniedError("the admin API is disabled until CLAUDEGATE_ADMIN_TOKEN is set")
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"authorization", b"cookie")]
        headers.append((b"authorization", b"Bearer " + token.get_secret_value().encode()))
        inner = {
            **scope,
            "path": "/admin" + path,
            "raw_path": ("/admin" + path).encode(),
            "root_path": "",
            "query_string": query.encode("latin-1"),
            "headers": headers,
        }
        inner.pop("path_params", None)
        inner.pop("router", None)
        inner.pop("endpoint", None)
        await self._admin(inner, receive, send)

    async def _forward_chat(
        self, scope: Scope, receive: Receive, send: Send, session: Session, member: StoredKey | None
    ) -> None:
        path = "/" + scope["path_params"]["path"]
        if not chat_routes.is_chat_path(path):
            raise NotFoundError(f"no console API {scope['path']}")
        identity = member.identity if member is not None else await self._operator_identity(scope)
        headers = [
            (k, v) for k, v in scope["headers"] if k not in (b"authorization", b"cookie", b"x-api-key")
        ]
        inner = {**scope, "path": path, "raw_path": path.encode(), "root_path": "", "headers": headers}
        call = GatewayCall(inner, receive, send)

        async def authenticate(_call: GatewayCall) -> Identity:
            _call.identity = identity
            return identity

        try:
            await chat_routes.dispatch(self._services, call, authenticate)
        except ClaudegateError as exc:
            await send_error(send, exc, call.request_id)

    async def _operator_identity(self, scope: Scope) -> Identity:
        raw = next((v for k, v in scope["headers"] if k == KEY_HEADER.encode()), None)
        try:
            key_id = int(raw) if raw is not None else None
        except ValueError:
            key_id = None
        if key_id is None:
            raise InvalidRequestError(
                f"{KEY_HEADER}: an operator chats as one of the organization's keys (its id)"
            )
        stored = await self._services.store.keys.find_active_key_by_id(key_id)
        if stored is None:
            raise InvalidRequestError(f"{KEY_HEADER}: no active key with id {key_id}")
        return stored.identity


class _StaticFiles(StaticFiles):
    """The console's files. StaticFiles raises its 404 and 405 for an exception middleware, which the
    console's router has not got (they would be 500s): here they are answers, in the API's envelope."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code == 405:
                return _error(MethodNotAllowedError(scope["method"], scope["path"], ("GET", "HEAD")))
            return _error(NotFoundError(f"no console file {scope['path']}"))


class _Forward:
    """An ASGI endpoint that checks the session (and CSRF token) and hands the call on."""

    __slots__ = ("_console", "_handler")

    def __init__(self, console: _Console, handler: Any) -> None:
        self._console = console
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        try:
            session, member = await self._console.checked(
                request.cookies.get(COOKIE), scope["method"], request.headers.get(CSRF_HEADER)
            )
            await self._handler(scope, receive, send, session, member)
        except ClaudegateError as exc:
            await _error(exc)(scope, receive, send)


def _json(data: object, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data), status_code=status, media_type="application/json", headers=_SECURITY_HEADERS
    )


def _error(exc: ClaudegateError) -> Response:
    return Response(
        exc.body(), status_code=exc.status, media_type="application/json", headers=_SECURITY_HEADERS
    )
