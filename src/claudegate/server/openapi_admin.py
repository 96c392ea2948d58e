"""The OpenAPI description of the admin API (``server/admin.py``, ``admin_chat.py``, ``admin_usage.py``):
organisations, users, keys, usage reports, prompts, budgets and configuration reloads, behind the admin
token."""

from __future__ import annotations

from typing import Any, Final

from claudegate.server.openapi_ops import JSON, op, path_param, query_param

__all__ = ["admin_paths"]

_LIMITS: Final[dict[str, Any]] = {
    "requests_per_minute": {"type": ["integer", "null"], "minimum": 1},
    "tokens_per_minute": {"type": ["integer", "null"], "minimum": 1},
    "max_concurrency": {"type": ["integer", "null"], "minimum": 1},
    "weight": {"type": ["number", "null"]},
}
_BUDGET: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "daily_tokens": {"type": ["integer", "null"]},
        "monthly_tokens": {"type": ["integer", "null"]},
        "daily_usd": {"type": ["number", "string", "null"]},
        "monthly_usd": {"type": ["number", "string", "null"]},
    },
}
_NAME: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}},
}
_PROMPT_VERSION: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["system"],
    "properties": {
        "system": {"type": "string"},
        "model": {"type": "string"},
        "note": {"type": "string"},
        "activate": {"type": "boolean"},
    },
}


def admin_paths() -> dict[str, Any]:
    admin = "adminToken"
    org = [path_param("org", "An organisation name")]
    user = [*org, path_param("user", "A user name")]
    prompt = [*org, path_param("name", "A prompt name")]
    key_id = [{"name": "key_id", "in": "path", "required": True, "schema": {"type": "integer"}}]
    settings = {"type": "object", "properties": _LIMITS}
    key_body = {
        "type": "object",
        "required": ["org"],
        "properties": {
            "org": {"type": "string"},
            "user": {"type": "string"},
            "name": {"type": "string"},
            "deadline_ms": {"type": ["integer", "null"]},
            "priority": {"type": ["integer", "null"]},
            "act_for_users": {"type": "boolean"},
            "cache_replies": {"type": ["boolean", "null"]},
            **_LIMITS,
        },
    }
    usage_params = [
        {"name": "group_by", "in": "query", "schema": {"enum": ["model", "day", "user", "key"]}},
        {"name": "since", "in": "query", "schema": {"type": "string"}},
        {"name": "org", "in": "query", "schema": {"type": "string"}},
    ]
    series_params = [
        query_param("bucket", {"enum": ["hour", "day", "month", "none"]}, "Period length (default day)"),
        query_param("by", {"enum": ["total", "org", "user", "key", "model"]}, "What splits the series"),
        query_param("org", {"type": "string"}),
        query_param("user", {"type": "string"}, "A user of org (needs org)"),
        query_param("key", {"type": "integer"}, "A key id"),
        query_param("model", {"type": "string"}),
        query_param("since", {"type": "string"}, "A time (ISO 8601) or a duration back from now (7d)"),
        query_param("until", {"type": "string"}),
        query_param("top", {"type": "integer", "minimum": 1, "maximum": 1000}),
        query_param("format", {"enum": ["json", "csv"]}),
    ]
    return {
        "/admin/organizations": {
            "get": op("List organisations", tag="admin", security=admin),
            "post": op("Create an organisation", tag="admin", security=admin, body=_NAME, ok="201"),
        },
        "/admin/organizations/{org}": {
            "patch": op(
                "Change an organisation's limits", tag="admin", security=admin, params=org, body=settings
            )
        },
        "/admin/organizations/{org}/users": {
            "get": op("List an organisation's users", tag="admin", security=admin, params=org),
            "post": op("Create a user", tag="admin", security=admin, params=org, body=_NAME, ok="201"),
        },
        "/admin/organizations/{org}/users/{user}": {
            "patch": op("Change a user's limits", tag="admin", security=admin, params=user, body=settings)
        },
        "/admin/keys": {
            "get": op(
                "List keys",
                tag="admin",
                security=admin,
                params=[{"name": "org", "in": "query", "schema": {"type": "string"}}],
            ),
            "post": op("Create a key (shown once)", tag="admin", security=admin, body=key_body, ok="201"),
        },
        "/admin/keys/{key_id}": {
            "patch": op("Change a key's settings", tag="admin", security=admin, params=key_id, body=key_body)
        },
        "/admin/keys/{key_id}/revoke": {
            "post": op("Revoke a key", tag="admin", security=admin, params=key_id)
        },
        "/admin/usage": {"get": op("Usage report", tag="admin", security=admin, params=usage_params)},
        "/admin/usage/series": {
            "get": op(
                "Usage over time (JSON or CSV)",
                tag="admin",
                security=admin,
                params=series_params,
                reply={JSON: {"schema": {"type": "object"}}, "text/csv": {"schema": {"type": "string"}}},
            )
        },
        "/admin/live": {
            "get": op(
                "In flight and waiting per upstream, recent refusals and errors", tag="admin", security=admin
            )
        },
        "/admin/reload": {
            "post": op("Reload the configuration file (what changed)", tag="admin", security=admin)
        },
        "/admin/organizations/{org}/prompts": {
            "get": op("List prompts", tag="admin", security=admin, params=org),
            "post": op(
                "Create a prompt",
                tag="admin",
                security=admin,
                params=org,
                body={
                    **_PROMPT_VERSION,
                    "required": ["name", "system"],
                    "properties": {**_PROMPT_VERSION["properties"], "name": {"type": "string"}},
                },
                ok="201",
            ),
        },
        "/admin/organizations/{org}/prompts/{name}": {
            "get": op("Get a prompt and its versions", tag="admin", security=admin, params=prompt)
        },
        "/admin/organizations/{org}/prompts/{name}/versions": {
            "post": op(
                "Add a prompt version",
                tag="admin",
                security=admin,
                params=prompt,
                body=_PROMPT_VERSION,
                ok="201",
            )
        },
        "/admin/organizations/{org}/prompts/{name}/activate": {
            "post": op(
                "Activate a version",
                tag="admin",
                security=admin,
                params=prompt,
                body={
                    "type": "object",
                    "required": ["version"],
                    "properties": {"version": {"type": "integer"}},
                },
            )
        },
        "/admin/organizations/{org}/prompts/{name}/rollback": {
            "post": op("Go back to the previous version", tag="admin", security=admin, params=prompt)
        },
        "/admin/organizations/{org}/prompts/{name}/split": {
            "put": op(
                "Split traffic between versions",
                tag="admin",
                security=admin,
                params=prompt,
                body={"type": "object", "properties": {"weights": {"type": ["object", "null"]}}},
            )
        },
        "/admin/organizations/{org}/prompts/{name}/usage": {
            "get": op("Usage per prompt version", tag="admin", security=admin, params=prompt)
        },
        "/admin/organizations/{org}/budget": {
            "get": op("An organisation's budget and spend", tag="admin", security=admin, params=org),
            "patch": op(
                "Change an organisation's budget", tag="admin", security=admin, params=org, body=_BUDGET
            ),
        },
        "/admin/organizations/{org}/users/{user}/budget": {
            "get": op("A user's budget and spend", tag="admin", security=admin, params=user),
            "patch": op("Change a user's budget", tag="admin", security=admin, params=user, body=_BUDGET),
        },
    }
