"""What a member of an organisation may ask of the admin API through the console: reads of their own
organisation, nothing else. Operators (the admin token) may ask anything.

A member's request is checked and, where it takes an organisation filter, pinned to their organisation,
so a hand-made URL cannot widen it; everything else is refused before it reaches the admin API.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from claudegate.errors import PermissionDeniedError

__all__ = ["member_request"]

# Reports and lists that take ?org=: the member's organisation is forced into the query.
_ORG_FILTERED = ("/usage", "/usage/series", "/keys")


def member_request(method: str, path: str, query: str, org: str) -> str:
    """The query string to send for a member of ``org`` asking ``method path?query`` of the admin API
    (path relative to ``/admin``); PermissionDeniedError when it is not theirs to ask."""
    if method not in ("GET", "HEAD"):
        raise PermissionDeniedError("only an operator (the admin token) can change settings in the console")
    if path in _ORG_FILTERED:
        params = [(name, value) for name, value in parse_qsl(query, keep_blank_values=True) if name != "org"]
        asked = {value for name, value in parse_qsl(query) if name == "org"}
        if asked - {org}:
            raise PermissionDeniedError(f"you may only see organization {org!r}")
        return urlencode([*params, ("org", org)])
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "organizations" and parts[1] == org:
        return query
    raise PermissionDeniedError(f"you may only see organization {org!r}")
