"""The admin API: organisations, users, gateway keys and usage reports over JSON. Mount it under ``/admin``.

Every call needs ``Authorization: Bearer <CLAUDEGATE_ADMIN_TOKEN>``; without a configured token every call
answers 403, so a gateway never exposes an unprotected admin API. Errors use Anthropic's envelope.

    POST  /organizations                      {"name"}                  -> 201 organization
    GET   /organizations                                                -> {"data": [organization]}
    PATCH /organizations/{org}                {org settings}            -> organization
    POST  /organizations/{org}/users          {"name"}                  -> 201 user
    GET   /organizations/{org}/users                                    -> {"data": [user]}
    PATCH /organizations/{org}/users/{user}   {user settings}           -> user
    POST  /keys                 {"org", "user"?, "name"?, key settings} -> 201 key with its plaintext "key"
    GET   /keys?org=                                                    -> {"data": [key]} (prefixes only)
    PATCH /keys/{id}                          {key settings}            -> key
    POST  /keys/{id}/revoke                                             -> key
    GET   /usage?org=&since=&group_by=model|day|user|key                -> {"data": [row], ...}
    GET   /usage/series?bucket=&by=&org=&…, GET /live  (reports: see ``admin_usage.py``)

``POST /keys`` creates the organisation and user when missing, as ``claudegate keys create`` does. Prompt
versions and budgets (``/organizations/{org}/prompts…``, ``…/budget``) are described in ``admin_chat.py``.

Settings (each optional in a PATCH, which changes only those given; null clears one back to its default):
organisations and users take ``requests_per_minute``, ``tokens_per_minute``, ``max_concurrency`` (null: no
limit) and ``weight`` (null: 1); keys take the three limits, ``deadline_ms`` (null: no default deadline),
``priority`` (null: 0), ``act_for_users`` (may act for end users with the chat API's x-user-id; null:
false) and ``cache_replies`` (the response cache answers the key's calls, or not; null: as ``cache_orgs``).
Organisations, users and keys show them as stored. A change applies at once in this process and within
``key_cache_ttl_s`` in other gateway processes.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from claudegate.errors import (
    ApiError,
    AuthenticationError,
    ClaudegateError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    PermissionDeniedError,
)
from claudegate.keys import KeyResolver
from claudegate.pipeline.describe import refuse_nul
from claudegate.server.admin_chat import chat_admin_routes
from claudegate.server.admin_usage import LiveUpstream, usage_report_routes
from claudegate.store import AlreadyExistsError, GroupBy, OrgRow, Store, StoreError
from claudegate.store.render import iso, key_json, new_key_json, org_json, parse_since, usage_json, user_json
from claudegate.store.settings import KEY_SETTINGS, ORG_SETTINGS, USER_SETTINGS, checked_changes

__all__ = ["AdminDeps", "admin_routes"]

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(frozen=True, slots=True)
class AdminDeps:
    """What the admin API needs: the store, the gateway's key resolver (to forget revoked keys and changed
    settings at once), the admin token (None disables the API) and what reads the running gateway's upstreams
    for ``/live`` (None: no upstreams to show)."""

    store: Store
    resolver: KeyResolver
    admin_token: SecretStr | None
    # Reloads the gateway's configuration (POST /admin/reload): what changed, or a ClaudegateError (400).
    reload: Callable[[], Awaitable[dict[str, Any]]] | None = None
    live: Callable[[], list[LiveUpstream]] | None = None


class ConflictError(InvalidRequestError):
    """Creating something that exists. Anthropic has no 409 type: other 4xx use invalid_request_error."""

    status = 409


def admin_routes(deps: AdminDeps) -> list[BaseRoute]:
    """The admin routes, relative to their mount point: ``Mount("/admin", routes=admin_routes(deps))``."""
    api = _AdminApi(deps)
    return [
        _route("/organizations", deps, GET=api.list_orgs, POST=api.create_org),
        _route("/organizations/{org}", deps, PATCH=api.update_org),
        _route("/organizations/{org}/users", deps, GET=api.list_users, POST=api.create_user),
        _route("/organizations/{org}/users/{user}", deps, PATCH=api.update_user),
        _route("/keys", deps, GET=api.list_keys, POST=api.create_key),
        _route("/keys/{key_id}", deps, PATCH=api.update_key),
        _route("/keys/{key_id}/revoke", deps, POST=api.revoke_key),
        _route("/usage", deps, GET=api.usage),
        _route("/reload", deps, POST=api.reload),
        *usage_report_routes(deps, _route),
        *chat_admin_routes(deps, _route),
        _route("/{path:path}", deps),
    ]


def _route(path: str, deps: AdminDeps, **handlers: Handler) -> Route:
    """One route per path, dispatching on the method itself so a wrong method gets the JSON envelope (405)
    rather than Starlette's plain-text answer, and an unknown path a 404 envelope."""

    async def endpoint(request: Request) -> Response:
        try:
            _authorize(deps.admin_token, request)
            handler = handlers.get(request.method)
            if handler is None:
                if not handlers:
                    raise NotFoundError(f"no admin endpoint {request.method} {request.url.path}")
                raise MethodNotAllowedError(request.method, request.url.path, sorted(handlers))
            return await handler(request)
        except ClaudegateError as exc:
            return _error(exc)
        except AlreadyExistsError as exc:
            return _error(ConflictError(str(exc)))
        except StoreError as exc:
            return _error(InvalidRequestError(str(exc)))
        except (SQLAlchemyError, OSError) as exc:
            logger.error("admin API: database error on %s %s: %s", request.method, request.url.path, exc)
            return _error(ApiError("the gateway's database is unavailable; retry shortly"))

    # Starlette would answer other methods itself (GET only for a function endpoint): accept them all here.
    return Route(path, endpoint, methods=_ALL_METHODS)


def _authorize(token: SecretStr | None, request: Request) -> None:
    if token is None:
        raise PermissionDeniedError("the admin API is disabled until CLAUDEGATE_ADMIN_TOKEN is set")
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise AuthenticationError("admin API calls need the header Authorization: Bearer <admin token>")
    if not hmac.compare_digest(presented.strip().encode(), token.get_secret_value().encode()):
        raise AuthenticationError("invalid admin token")


class _AdminApi:
    __slots__ = ("_deps",)

    def __init__(self, deps: AdminDeps) -> None:
        self._deps = deps

    @property
    def _store(self) -> Store:
        return self._deps.store

    async def list_orgs(self, _request: Request) -> Response:
        return _json({"data": [org_json(org) for org in await self._store.orgs.list_orgs()]})

    async def create_org(self, request: Request) -> Response:
        body = await _body(request)
        org = await self._store.orgs.create_org(_required_text(body, "name"))
        return _json(org_json(org), status=201)

    async def update_org(self, request: Request) -> Response:
        org = await self._org(request.path_params["org"])
        changes = await _settings_body(request, ORG_SETTINGS)
        updated = await self._store.orgs.update_org_settings(org.id, **changes)
        if updated is None:
            raise NotFoundError(f"no organization named {org.name!r}")
        if changes:
            # Every key of the organisation carries its settings: drop them all from this process's cache.
            self._deps.resolver.clear()
        return _json(org_json(updated))

    async def list_users(self, request: Request) -> Response:
        org = await self._org(request.path_params["org"])
        users = await self._store.orgs.list_users(org.id)
        return _json({"data": [user_json(user, org.name) for user in users]})

    async def create_user(self, request: Request) -> Response:
        org = await self._org(request.path_params["org"])
        body = await _body(request)
        user = await self._store.orgs.create_user(org.id, _required_text(body, "name"))
        return _json(user_json(user, org.name), status=201)

    async def update_user(self, request: Request) -> Response:
        org = await self._org(request.path_params["org"])
        name = request.path_params["user"]
        user = await self._store.orgs.get_user(org.id, name)
        if user is None:
            raise NotFoundError(f"no user named {name!r} in organization {org.name!r}")
        changes = await _settings_body(request, USER_SETTINGS)
        updated = await self._store.orgs.update_user_settings(user.id, **changes)
        if updated is None:
            raise NotFoundError(f"no user named {name!r} in organization {org.name!r}")
        if changes:
            self._deps.resolver.clear()
        return _json(user_json(updated, org.name))

    async def list_keys(self, request: Request) -> Response:
        org_name = request.query_params.get("org")
        org_id = (await self._org(org_name)).id if org_name else None
        return _json({"data": [key_json(key) for key in await self._store.keys.list_keys(org_id)]})

    async def create_key(self, request: Request) -> Response:
        body = await _body(request)
        org_name = _required_text(body, "org")
        user_name = _optional_text(body, "user")
        key_name = _optional_text(body, "name")
        # Checked before anything is created, so a bad setting leaves no new organisation or user behind.
        settings: dict[str, Any] = {name: body[name] for name in KEY_SETTINGS if name in body}
        checked_changes(settings)
        org = await self._store.orgs.get_or_create_org(org_name)
        user = await self._store.orgs.get_or_create_user(org.id, user_name) if user_name is not None else None
        new = await self._store.keys.create_key(
            org_id=org.id,
            user_id=user.id if user else None,
            name="default" if key_name is None else key_name,
            **settings,
        )
        return _json(new_key_json(new), status=201)

    async def update_key(self, request: Request) -> Response:
        key_id = _key_id(request)
        changes = await _settings_body(request, KEY_SETTINGS)
        updated = await self._store.keys.update_key_settings(key_id, **changes)
        if updated is None:
            raise NotFoundError(f"no key with id {key_id}")
        self._deps.resolver.forget_key(key_id)
        return _json(key_json(updated))

    async def revoke_key(self, request: Request) -> Response:
        key_id = _key_id(request)
        revoked = await self._store.keys.revoke_key(key_id)
        if revoked is None:
            raise NotFoundError(f"no key with id {key_id}")
        # This process stops accepting the key now; other gateway processes within key_cache_ttl_s.
        self._deps.resolver.forget_key(key_id)
        return _json(key_json(revoked))

    async def reload(self, request: Request) -> Response:
        if self._deps.reload is None:
            raise NotFoundError("this gateway does not reload its configuration")
        return _json(await self._deps.reload())

    async def usage(self, request: Request) -> Response:
        params = request.query_params
        raw_group = params.get("group_by", GroupBy.MODEL.value)
        try:
            group_by = GroupBy(raw_group)
        except ValueError:
            choices = ", ".join(group.value for group in GroupBy)
            raise InvalidRequestError(f"group_by must be one of {choices}; got {raw_group!r}") from None
        since = None
        if params.get("since"):
            try:
                since = parse_since(params["since"])
            except ValueError as exc:
                raise InvalidRequestError(str(exc)) from None
        org_name = params.get("org")
        org_id = (await self._org(org_name)).id if org_name else None
        rows = await self._store.usage.report(group_by=group_by, org_id=org_id, since=since)
        return _json(
            {
                "group_by": group_by.value,
                "org": org_name,
                "since": iso(since),
                "data": [usage_json(row) for row in rows],
            }
        )

    async def _org(self, name: str) -> OrgRow:
        org = await self._store.orgs.get_org(name)
        if org is None:
            raise NotFoundError(f"no organization named {name!r}")
        return org


async def _body(request: Request) -> Mapping[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise InvalidRequestError("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    refuse_nul(body)
    return body


async def _settings_body(request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The settings a PATCH body changes. Their values are checked by the store; a name that is not one of
    ``allowed`` is refused here, so a misspelt setting is not silently ignored."""
    body = await _body(request)
    for name in body:
        if name not in allowed:
            raise InvalidRequestError(f"{name}: not a setting here; use {', '.join(allowed)}")
    return dict(body)


def _key_id(request: Request) -> int:
    raw = request.path_params["key_id"]
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequestError(f"key id must be an integer, got {raw!r}") from None


def _required_text(body: Mapping[str, Any], field: str) -> str:
    value = _optional_text(body, field)
    if value is None:
        raise InvalidRequestError(f"{field}: field required (a string)")
    return value


def _optional_text(body: Mapping[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise InvalidRequestError(f"{field}: must be a string, got {type(value).__name__}")
    return value


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(exc: ClaudegateError) -> Response:
    return Response(exc.body(), status_code=exc.status, media_type="application/json")
