"""The OpenAPI description of the web console's routes (``claudegate/console/app.py``).

The console's API is the admin API and the chat API under ``/console/api``, called with the console's
session cookie instead of the admin token or a gateway key; so those operations are the admin and chat
operations themselves, re-described here with the session's security (and, for changes, its CSRF token).
"""

from __future__ import annotations

import copy
from typing import Any, Final

from claudegate.server.openapi_ops import ANTHROPIC_ERROR, JSON, op, path_param

__all__ = ["CONSOLE_SECURITY_SCHEMES", "STATIC_FILES", "console_paths"]

# The console's cookie, its CSRF header and the header an operator names the key to chat as with (see
# claudegate.console.session and claudegate.console.app).
CONSOLE_SECURITY_SCHEMES: Final[dict[str, Any]] = {
    "consoleSession": {"type": "apiKey", "in": "cookie", "name": "claudegate_console"},
    "consoleCsrf": {"type": "apiKey", "in": "header", "name": "x-csrf-token"},
}
# What the console ships in claudegate/console/static.
STATIC_FILES: Final = ("console.js", "console.css", "icon.svg", "index.html")
_READS: Final = ("get", "head")
_HTML: Final[dict[str, Any]] = {"text/html": {"schema": {"type": "string"}}}
_KEY_ID: Final[dict[str, Any]] = {
    "name": "x-console-key-id",
    "in": "header",
    "schema": {"type": "integer"},
    "description": "The id of the key an operator chats as (a member chats as their own key)",
}
_ME: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["role", "csrf", "models"],
    "properties": {
        "role": {"enum": ["operator", "member"]},
        "csrf": {"type": "string", "description": "Send it back in x-csrf-token with every change"},
        "org": {"type": ["string", "null"]},
        "user": {"type": ["string", "null"]},
        "key": {"type": ["string", "null"]},
        "models": {"type": "array", "items": {"type": "string"}},
        "chat_model": {"type": ["string", "null"]},
    },
}


def console_paths(admin: dict[str, Any], chat: dict[str, Any]) -> dict[str, Any]:
    """The console's own routes, and ``admin`` (``/admin/…``) and ``chat`` (``/chat…``) as it serves them."""
    page = op("The console (one HTML page)", tag="console", security=None, reply=_HTML)
    paths: dict[str, Any] = {
        "/console": {"get": page},
        "/console/": {"get": page},
        "/console/static/{file}": {
            "get": op(
                "The console's script, style sheet and icon",
                tag="console",
                security=None,
                params=[
                    {**path_param("file", "A file of the console"), "schema": {"enum": list(STATIC_FILES)}}
                ],
                reply={"*/*": {"schema": {"type": "string"}}},
            )
        },
        "/console/sign-in": {
            "post": op(
                "Sign in with the admin token (operator) or a gateway key (member of its organisation)",
                tag="console",
                security=None,
                body={"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}},
                reply={JSON: {"schema": {"type": "object", "properties": {"role": {"type": "string"}}}}},
                description=(
                    "JSON only (a cross-site form cannot send it). Sets the session cookie "
                    "(HTTP-only, SameSite=Strict, 12 hours). 403 while no admin token is configured."
                ),
            )
        },
        "/console/sign-out": {"post": _session_op("Sign out (forgets the cookie)", "post")},
        "/console/api/me": {"get": _session_op("Who is signed in, the CSRF token, the models", "get", _ME)},
    }
    for path, operations in admin.items():
        paths["/console/api" + path] = _as_console(operations, chat=False)
    for path, operations in chat.items():
        paths["/console/api" + path] = _as_console(operations, chat=True)
    return paths


def _session_op(summary: str, method: str, reply: dict[str, Any] | None = None) -> dict[str, Any]:
    operation = op(
        summary,
        tag="console",
        security=None,
        reply={JSON: {"schema": reply}} if reply is not None else None,
    )
    return _with_session(operation, method)


def _with_session(operation: dict[str, Any], method: str) -> dict[str, Any]:
    """The operation called with the console's session: a change also needs the CSRF token (403 without)."""
    requirement: dict[str, list[str]] = (
        {"consoleSession": []} if method in _READS else {"consoleSession": [], "consoleCsrf": []}
    )
    operation["security"] = [requirement]
    operation["responses"]["4XX"] = {
        "description": "An error",
        "content": {JSON: {"schema": ANTHROPIC_ERROR}},
    }
    return operation


def _as_console(operations: dict[str, Any], *, chat: bool) -> dict[str, Any]:
    mirrored: dict[str, Any] = {}
    for method, operation in operations.items():
        copied = copy.deepcopy(operation)
        copied["tags"] = ["console"]
        copied["summary"] = f"Console: {operation['summary']}"
        if chat:
            copied["parameters"] = [*copied.get("parameters", []), _KEY_ID]
        else:
            copied["description"] = (
                "The admin API as the session allows: an operator may ask anything; a member may only read "
                "their own organisation (403 otherwise)."
            )
        mirrored[method] = _with_session(copied, method)
    return mirrored
