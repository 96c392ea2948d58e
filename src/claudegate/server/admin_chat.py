"""The admin API's chat part: prompt versions and budgets. Mounted with the rest of the admin API (same token,
same envelope); paths are relative to ``/admin``.

    GET   /organizations/{org}/prompts                                   -> {"data": [prompt]}
    POST  /organizations/{org}/prompts            {name, system, model?, note?, activate?}
                                                                         -> 201 prompt with the new "version"
    GET   /organizations/{org}/prompts/{name}                            -> prompt with its "versions"
    POST  /organizations/{org}/prompts/{name}/versions {system, model?, note?, activate?} -> 201, as above
    POST  /organizations/{org}/prompts/{name}/activate {version}         -> prompt
    POST  /organizations/{org}/prompts/{name}/rollback                   -> prompt
    PUT   /organizations/{org}/prompts/{name}/split  {"weights": {"1": 50, "2": 50} | null} -> prompt
    GET   /organizations/{org}/prompts/{name}/usage                      -> {"data": [usage per version]}
    GET   /organizations/{org}/budget                                    -> caps, spend today, this month
    PATCH /organizations/{org}/budget             {daily_tokens?, monthly_tokens?, daily_usd?, monthly_usd?}
    GET   /organizations/{org}/users/{user}/budget                       -> the same for one user
    PATCH /organizations/{org}/users/{user}/budget

A new version becomes active when ``activate`` is true, or when the prompt has no active version yet.
Activating a version ends a split. Conversations keep the version they started with. A budget cap set to
null is cleared.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from claudegate.chat.render import prompt_json, usd, version_json, version_usage_json
from claudegate.errors import InvalidRequestError, NotFoundError
from claudegate.keys import BudgetCaps
from claudegate.pipeline.budgets import period_end
from claudegate.pipeline.describe import refuse_nul
from claudegate.store import OrgRow, Store
from claudegate.store.budgets import BUDGET_SETTINGS
from claudegate.store.chat_rows import PromptRow
from claudegate.store.render import iso

__all__ = ["budget_json", "chat_admin_routes"]

Handler = Callable[[Request], Awaitable[Response]]
RouteFactory = Callable[..., Route]


def chat_admin_routes(deps: Any, route: RouteFactory) -> list[Route]:
    """The routes, made with the admin API's own route factory (authorisation, errors, methods)."""
    api = _ChatAdmin(deps.store, deps.resolver)
    base = "/organizations/{org}/prompts"
    return [
        route(base, deps, GET=api.list_prompts, POST=api.create_prompt),
        route(base + "/{name}", deps, GET=api.get_prompt),
        route(base + "/{name}/versions", deps, POST=api.create_version),
        route(base + "/{name}/activate", deps, POST=api.activate),
        route(base + "/{name}/rollback", deps, POST=api.rollback),
        route(base + "/{name}/split", deps, PUT=api.split),
        route(base + "/{name}/usage", deps, GET=api.usage),
        route("/organizations/{org}/budget", deps, GET=api.get_budget, PATCH=api.update_budget),
        route("/organizations/{org}/users/{user}/budget", deps, GET=api.get_budget, PATCH=api.update_budget),
    ]


def budget_json(caps: BudgetCaps) -> dict[str, Any]:
    return {
        "daily_tokens": caps.daily_tokens,
        "monthly_tokens": caps.monthly_tokens,
        "daily_usd": caps.daily_usd,
        "monthly_usd": caps.monthly_usd,
    }


class _ChatAdmin:
    __slots__ = ("_resolver", "_store")

    def __init__(self, store: Store, resolver: Any) -> None:
        self._store = store
        self._resolver = resolver

    async def _org(self, request: Request) -> OrgRow:
        name = request.path_params["org"]
        org = await self._store.orgs.get_org(name)
        if org is None:
            raise NotFoundError(f"no organization named {name!r}")
        return org

    async def _prompt(self, request: Request) -> tuple[OrgRow, PromptRow]:
        org = await self._org(request)
        name = request.path_params["name"]
        prompt = await self._store.prompts.get_prompt(org.id, name)
        if prompt is None:
            raise NotFoundError(f"no prompt named {name!r} in organization {org.name!r}")
        return org, prompt

    # -- prompts ------------------------------------------------------------------------------------------

    async def list_prompts(self, request: Request) -> Response:
        org = await self._org(request)
        return _json(
            {"data": [prompt_json(prompt) for prompt in await self._store.prompts.list_prompts(org.id)]}
        )

    async def create_prompt(self, request: Request) -> Response:
        org = await self._org(request)
        body = await _body(request)
        return await self._new_version(org, _text(body, "name", required=True) or "", body)

    async def create_version(self, request: Request) -> Response:
        org, prompt = await self._prompt(request)
        return await self._new_version(org, prompt.name, await _body(request))

    async def _new_version(self, org: OrgRow, name: str, body: Mapping[str, Any]) -> Response:
        activate = body.get("activate")
        if activate is not None and not isinstance(activate, bool):
            raise InvalidRequestError("activate: must be true or false")
        prompt, version = await self._store.prompts.create_version(
            org.id,
            name,
            system=_text(body, "system", required=True) or "",
            model=_text(body, "model"),
            note=_text(body, "note"),
            activate=activate,
        )
        return _json({**prompt_json(prompt), "version": version_json(version)}, status=201)

    async def get_prompt(self, request: Request) -> Response:
        _, prompt = await self._prompt(request)
        versions = await self._store.prompts.list_versions(prompt.id)
        return _json({**prompt_json(prompt), "versions": [version_json(version) for version in versions]})

    async def activate(self, request: Request) -> Response:
        org, prompt = await self._prompt(request)
        version = (await _body(request)).get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise InvalidRequestError("version: field required (a whole number)")
        return _json(prompt_json(await self._store.prompts.activate(org.id, prompt.name, version)))

    async def rollback(self, request: Request) -> Response:
        org, prompt = await self._prompt(request)
        return _json(prompt_json(await self._store.prompts.rollback(org.id, prompt.name)))

    async def split(self, request: Request) -> Response:
        org, prompt = await self._prompt(request)
        body = await _body(request)
        if "weights" not in body:
            raise InvalidRequestError(
                'weights: field required ({"1": 50, "2": 50}, or null to end the split)'
            )
        raw = body["weights"]
        weights: dict[int, float] | None = None
        if raw is not None:
            if not isinstance(raw, dict):
                raise InvalidRequestError('weights: an object of version to weight, e.g. {"1": 50, "2": 50}')
            weights = {}
            for version, weight in raw.items():
                try:
                    weights[int(version)] = weight
                except ValueError:
                    raise InvalidRequestError(f"weights: {version!r} is not a version number") from None
        return _json(prompt_json(await self._store.prompts.set_split(org.id, prompt.name, weights)))

    async def usage(self, request: Request) -> Response:
        _, prompt = await self._prompt(request)
        rows = await self._store.prompts.usage(prompt.id)
        return _json({"prompt": prompt.name, "data": [version_usage_json(row) for row in rows]})

    # -- budgets ------------------------------------------------------------------------------------------

    async def _budget_owner(self, request: Request) -> tuple[OrgRow, int | None]:
        org = await self._org(request)
        name = request.path_params.get("user")
        if name is None:
            return org, None
        user = await self._store.orgs.get_user(org.id, name)
        if user is None:
            raise NotFoundError(f"no user named {name!r} in organization {org.name!r}")
        return org, user.id

    async def get_budget(self, request: Request) -> Response:
        org, user_id = await self._budget_owner(request)
        caps = await self._store.budgets.get(org_id=org.id, user_id=user_id)
        if caps is None:
            raise NotFoundError("no such organization or user")
        return _json(await self._budget(org, user_id, caps, request))

    async def update_budget(self, request: Request) -> Response:
        org, user_id = await self._budget_owner(request)
        body = await _body(request)
        for name in body:
            if name not in BUDGET_SETTINGS:
                raise InvalidRequestError(f"{name}: not a budget; use {', '.join(BUDGET_SETTINGS)}")
        caps = await self._store.budgets.update(org_id=org.id, user_id=user_id, changes=body)
        if caps is None:
            raise NotFoundError("no such organization or user")
        if body:
            self._resolver.clear()  # every key of the organisation (or user) carries its caps
        return _json(await self._budget(org, user_id, caps, request))

    async def _budget(
        self, org: OrgRow, user_id: int | None, caps: BudgetCaps, request: Request
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        day_start = datetime(now.year, now.month, now.day, tzinfo=UTC)
        month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
        today = await self._store.budgets.spent(org_id=org.id, user_id=user_id, since=day_start)
        month = await self._store.budgets.spent(org_id=org.id, user_id=user_id, since=month_start)
        return {
            "org": org.name,
            "user": request.path_params.get("user"),
            **budget_json(caps),
            "spent": {
                "today": {
                    "tokens": today.tokens,
                    "usd": usd(today.usd),
                    "resets_at": iso(period_end(now, "day")),
                },
                "this_month": {
                    "tokens": month.tokens,
                    "usd": usd(month.usd),
                    "resets_at": iso(period_end(now, "month")),
                },
            },
        }


async def _body(request: Request) -> Mapping[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise InvalidRequestError("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    refuse_nul(body)
    return body


def _text(body: Mapping[str, Any], field: str, *, required: bool = False) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise InvalidRequestError(f"{field}: field required (a string)")
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"{field}: must be a string, got {type(value).__name__}")
    return value


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")
