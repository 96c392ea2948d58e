"""Store rows as JSON-ready dicts, and parsing a report's start time: shared by the CLI and the admin API so
both speak the same shapes."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from claudegate.keys import LimitSet
from claudegate.store.rows import KeyRow, NewKey, OrgRow, UsageReportRow, UserRow

__all__ = [
    "iso",
    "key_json",
    "limits_json",
    "new_key_json",
    "org_json",
    "parse_since",
    "usage_json",
    "user_json",
]

_RELATIVE = re.compile(r"(\d+)([dh])")


def iso(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``, as Anthropic writes times."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """A report's start: ``2026-11-01`` (midnight UTC), an ISO 8601 time (UTC if it names no zone), or a
    span back from now such as ``7d`` or ``12h``. Raises ValueError saying what is accepted."""
    text = text.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        try:
            span = timedelta(days=amount) if unit == "d" else timedelta(hours=amount)
            return (now or datetime.now(UTC)) - span
        except OverflowError:  # further back than datetime reaches (the year 1)
            raise ValueError(f"{text!r} reaches back further than any record; use a shorter span") from None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"since must be a date (2026-11-01), an ISO 8601 time (2026-11-01T12:00:00Z) or a span such as "
            f"7d or 12h; got {text!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def limits_json(limits: LimitSet) -> dict[str, Any]:
    """A level's limits as flat fields, null meaning no limit (the names the admin API's PATCH takes)."""
    return {
        "requests_per_minute": limits.requests_per_minute,
        "tokens_per_minute": limits.tokens_per_minute,
        "max_concurrency": limits.max_concurrency,
    }


def org_json(org: OrgRow) -> dict[str, Any]:
    """An organisation with its settings as stored (a null weight counts as 1)."""
    return {
        "id": org.id,
        "name": org.name,
        "created_at": iso(org.created_at),
        **limits_json(org.limits),
        "weight": org.weight,
    }


def user_json(user: UserRow, org_name: str) -> dict[str, Any]:
    """A user with its settings as stored (a null weight counts as 1)."""
    return {
        "id": user.id,
        "org": org_name,
        "name": user.name,
        "created_at": iso(user.created_at),
        **limits_json(user.limits),
        "weight": user.weight,
    }


def key_json(key: KeyRow) -> dict[str, Any]:
    """A key as listed: its prefix, never the key; and its settings as stored (null priority counts as 0)."""
    return {
        "id": key.id,
        "org": key.org_name,
        "user": key.user_name,
        "name": key.name,
        "prefix": key.prefix,
        "active": key.active,
        "created_at": iso(key.created_at),
        "revoked_at": iso(key.revoked_at),
        "last_used_at": iso(key.last_used_at),
        **limits_json(key.limits),
        "deadline_ms": key.deadline_ms,
        "priority": key.priority,
        "act_for_users": key.act_for_users,
        "cache_replies": key.cache_replies,
    }


def new_key_json(new: NewKey) -> dict[str, Any]:
    """A key just created: the only time the plaintext ``key`` appears anywhere."""
    return {"key": new.key, **key_json(new.row)}


def usage_json(row: UsageReportRow) -> dict[str, Any]:
    """One report row. ``cost_usd`` is a decimal string (as in Anthropic's cost reports): exact."""
    return {
        "group": row.group,
        "label": row.label,
        "requests": row.requests,
        "errors": row.errors,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cache_creation_input_tokens": row.cache_creation_input_tokens,
        "cache_read_input_tokens": row.cache_read_input_tokens,
        "cost_usd": format(row.cost_usd.normalize(), "f"),
        "unpriced_requests": row.unpriced_requests,
    }
