"""The admin API's reports: usage over time, and the gateway's live state. Mounted with the rest of the admin
API (same token, same envelope); paths are relative to ``/admin``.

    GET /usage/series?bucket=hour|day|month|none&by=total|org|user|key|model
                     &org=&user=&key=&model=&since=&until=&top=&format=json|csv
        -> {"bucket", "by", "filters", "totals", "data": [row]}, or the rows as CSV
    GET /live        -> {"upstreams": [{name, in_flight, waiting, refusals_last_hour, breaker}],
                         "in_flight", "recent_errors": [...]}

``user`` names a user of ``org`` (so it needs ``org``); ``key`` is a key id. ``since`` and ``until`` take a
date (UTC), an ISO 8601 time or an age (``7d``, ``12h``); ``until`` is exclusive. ``top=N`` keeps the N
costliest groups of the range and adds up the rest in one group ``"other"`` (what a chart can show). Rows
come in time order; costs are exact decimal strings, as in ``/usage``.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from claudegate.errors import InvalidRequestError, NotFoundError
from claudegate.store import Store
from claudegate.store.render import iso, parse_since
from claudegate.store.usage_series import Bucket, SeriesBy, UsageQuery, UsageSeriesRow, series_json

if TYPE_CHECKING:
    from claudegate.runtime.services import Services

__all__ = ["LiveUpstream", "live_upstreams", "usage_report_routes"]

RouteFactory = Callable[..., Route]
_E = TypeVar("_E", Bucket, SeriesBy)

_COLUMNS = (
    "period",
    "group",
    "label",
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cost_usd",
    "unpriced_requests",
)


@dataclass(frozen=True, slots=True)
class LiveUpstream:
    """One upstream as it is now, read from the running gateway's pool and admission queues."""

    name: str
    in_flight: int
    waiting: int
    breaker: str


def usage_report_routes(deps: Any, route: RouteFactory) -> list[Route]:
    """The routes, made with the admin API's own route factory (authorisation, errors, methods)."""
    api = _Reports(deps.store, getattr(deps, "live", None))
    return [
        route("/usage/series", deps, GET=api.series),
        route("/live", deps, GET=api.live),
    ]


def _usd(value: Decimal) -> str:
    return format(value.normalize(), "f")


class _Reports:
    __slots__ = ("_live", "_store")

    def __init__(self, store: Store, live: Callable[[], list[LiveUpstream]] | None) -> None:
        self._store = store
        self._live = live

    async def series(self, request: Request) -> Response:
        params = request.query_params
        query, filters = await self._query(params)
        rows = await self._store.usage.series(query)
        if params.get("format", "json") == "csv":
            return _csv(rows)
        if params.get("format", "json") != "json":
            raise InvalidRequestError(f"format must be json or csv; got {params['format']!r}")
        totals = _totals(rows)
        return _json(
            {
                "bucket": query.bucket.value if query.bucket else None,
                "by": query.by.value,
                "filters": filters,
                "totals": totals,
                "data": [series_json(row) for row in rows],
            }
        )

    async def _query(self, params: Mapping[str, str]) -> tuple[UsageQuery, dict[str, Any]]:
        bucket_text = params.get("bucket", Bucket.DAY.value)
        bucket = None if bucket_text == "none" else _choice(Bucket, "bucket", bucket_text, extra="none")
        by = _choice(SeriesBy, "by", params.get("by", SeriesBy.TOTAL.value))
        org_id = user_id = key_id = None
        org_name = params.get("org") or None
        user_name = params.get("user") or None
        if org_name is not None:
            org = await self._store.orgs.get_org(org_name)
            if org is None:
                raise NotFoundError(f"no organization named {org_name!r}")
            org_id = org.id
            if user_name is not None:
                user = await self._store.orgs.get_user(org.id, user_name)
                if user is None:
                    raise NotFoundError(f"no user named {user_name!r} in organization {org_name!r}")
                user_id = user.id
        elif user_name is not None:
            raise InvalidRequestError("user: name the user's organization with org as well")
        if params.get("key"):
            try:
                key_id = int(params["key"])
            except ValueError:
                raise InvalidRequestError(
                    f"key must be a key id (a whole number); got {params['key']!r}"
                ) from None
        since = _time(params, "since")
        until = _time(params, "until")
        model = params.get("model") or None
        top = None
        if params.get("top"):
            try:
                top = int(params["top"])
            except ValueError:
                top = 0
            if not 1 <= top <= 1000:
                raise InvalidRequestError(f"top must be a whole number from 1 to 1000; got {params['top']!r}")
        query = UsageQuery(
            bucket=bucket,
            by=by,
            org_id=org_id,
            user_id=user_id,
            key_id=key_id,
            model=model,
            since=since,
            until=until,
            top=top,
        )
        filters = {
            "org": org_name,
            "user": user_name,
            "key": key_id,
            "model": model,
            "since": iso(since),
            "until": iso(until),
            "top": top,
        }
        return query, filters

    async def live(self, _request: Request) -> Response:
        now = datetime.now(UTC)
        refusals = await self._store.usage.refusals_by_upstream(since=now - timedelta(hours=1))
        upstreams = self._live() if self._live is not None else []
        errors = await self._store.usage.recent_errors(since=now - timedelta(days=1))
        return _json(
            {
                "at": iso(now),
                "in_flight": sum(upstream.in_flight for upstream in upstreams),
                "upstreams": [
                    {
                        "name": upstream.name,
                        "in_flight": upstream.in_flight,
                        "waiting": upstream.waiting,
                        "refusals_last_hour": refusals.get(upstream.name, 0),
                        "breaker": upstream.breaker,
                    }
                    for upstream in upstreams
                ],
                "refusals_last_hour": sum(refusals.values()),
                "recent_errors": [{**error, "created_at": iso(error["created_at"])} for error in errors],
            }
        )


def _choice(kind: type[_E], field: str, value: str, extra: str | None = None) -> _E:
    try:
        return kind(value)
    except ValueError:
        choices = [member.value for member in kind] + ([extra] if extra else [])
        raise InvalidRequestError(f"{field} must be one of {', '.join(choices)}; got {value!r}") from None


def _time(params: Mapping[str, str], field: str) -> datetime | None:
    if not params.get(field):
        return None
    try:
        return parse_since(params[field])
    except ValueError as exc:
        raise InvalidRequestError(f"{field}: {exc}") from None


def _totals(rows: list[UsageSeriesRow]) -> dict[str, Any]:
    return {
        "requests": sum(row.requests for row in rows),
        "errors": sum(row.errors for row in rows),
        "input_tokens": sum(row.input_tokens for row in rows),
        "output_tokens": sum(row.output_tokens for row in rows),
        "cache_creation_input_tokens": sum(row.cache_creation_input_tokens for row in rows),
        "cache_read_input_tokens": sum(row.cache_read_input_tokens for row in rows),
        "cost_usd": _usd(sum((row.cost_usd for row in rows), Decimal(0))),
        "unpriced_requests": sum(row.unpriced_requests for row in rows),
    }


def _csv(rows: list[UsageSeriesRow]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_COLUMNS)
    for row in rows:
        data = series_json(row)
        writer.writerow(["" if data[name] is None else data[name] for name in _COLUMNS])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="usage.csv"'},
    )


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def live_upstreams(services: Services) -> list[LiveUpstream]:
    """Each upstream as it is now: calls in flight and waiting, and its breaker (the admin API's /live)."""
    now = time.monotonic()
    return [
        LiveUpstream(
            name=member.name,
            in_flight=member.in_flight,
            waiting=services.pipeline.waiting(member.name),
            breaker=member.breaker.state(now).value,
        )
        for member in services.pool.members
    ]
