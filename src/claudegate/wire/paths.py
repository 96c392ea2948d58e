"""Request paths taken apart as the client sent them, and the shapes of the ids they carry.

ASGI servers hand over ``path`` percent-decoded: ``/v1/models/..%2F..%2Fv1%2Fmessages`` arrives as
``/v1/models/../../v1/messages``. Routed or forwarded as it stands, one segment becomes several, and a
``..`` can climb out of the route the gateway checked. So the gateway splits ``raw_path`` on the slashes
the client actually sent, decodes each segment on its own, and accepts a path only when every segment is
a plain name: ASCII letters, digits and RFC 3986's other path characters, never ``.`` or ``..``, never a
``/``, ``?``, ``#``, ``%``, space or control character once decoded. Such a path reads the same decoded
and encoded, so what the gateway forwards is exactly what it checked. The query string is forwarded with
every byte outside printable ASCII percent-encoded, so nothing but printable ASCII reaches the request line.

Path parameters are then checked against the shape of the id they name before any lookup or forwarding.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "BATCH_ID",
    "CHAT_ID",
    "FILE_ID",
    "MODEL_ID",
    "canonical_path",
    "safe_query",
    "valid_id",
]

# RFC 3986 ``pchar`` without the percent sign: what a decoded segment may hold.
_SEGMENT = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@]+")
# A whole path of such segments, none beginning with a dot, nothing encoded: what nearly every call sends,
# checked with one match (about a tenth of the cost of going segment by segment).
_PLAIN_PATH = re.compile(rb"(?:/[A-Za-z0-9\-_~!$&'()*+,;=:@][A-Za-z0-9\-._~!$&'()*+,;=:@]*)+")
# Characters a query keeps as they are; anything else (non-ASCII, controls, space, '#', quotes) is encoded.
_QUERY_SAFE = "!$&'()*+,;=:@/?-._~%[]"
_SAFE_QUERY = re.compile(rb"[A-Za-z0-9!$&'()*+,;=:@/?\-._~%\[\]]*")  # nothing to encode: the usual case

# Model ids: Anthropic's (claude-opus-4-7, claude-3-5-sonnet-20241022) and the dated or versioned forms
# other Anthropic-compatible upstreams use (a ':' or '@' version suffix).
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
BATCH_ID = re.compile(r"msgbatch_[A-Za-z0-9]{1,120}")
FILE_ID = re.compile(r"file_[A-Za-z0-9]{1,120}")
CHAT_ID = re.compile(r"chat_[0-9a-f]{24}")


def canonical_path(scope: Mapping[str, Any]) -> str | None:
    """The request's path if every segment is a plain name (see the module docstring), else None.

    A single trailing slash is dropped. Without ``raw_path`` (an ASGI server that does not give it) the
    decoded path is checked segment by segment instead: an encoded slash can no longer be told apart, but
    nothing unsafe passes either way.
    """
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        raw = quote(scope["path"], safe="/").encode("ascii")
    if _PLAIN_PATH.fullmatch(raw):
        return raw.decode("ascii")
    if not raw.startswith(b"/"):
        return None
    parts = raw[1:].split(b"/")
    if len(parts) > 1 and parts[-1] == b"":
        parts.pop()
    segments: list[str] = []
    for part in parts:
        try:
            segment = unquote_to_bytes(part).decode("ascii")
        except UnicodeDecodeError:
            return None
        if segment in (".", "..") or not _SEGMENT.fullmatch(segment):
            return None
        segments.append(segment)
    return "/" + "/".join(segments)


def safe_query(query: bytes) -> str:
    """The query string with every byte outside printable ASCII (and '#', space, quotes) percent-encoded."""
    if _SAFE_QUERY.fullmatch(query):
        return query.decode("ascii")
    return quote(query, safe=_QUERY_SAFE)


def valid_id(pattern: re.Pattern[str], value: str) -> bool:
    return pattern.fullmatch(value) is not None
