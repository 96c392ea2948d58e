"""One upstream and the HTTP client the gateway reaches it with."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

__all__ = ["Upstream", "new_session"]


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    base_url: str  # without a trailing slash
    api_key: str  # sent as x-api-key; never logged

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        return f"Upstream(name={self.name!r}, base_url={self.base_url!r})"


def new_session() -> aiohttp.ClientSession:
    """The gateway's client: aiohttp, because its per-call cost is a fraction of httpx's (design.md).

    Replies are not decompressed (the gateway asks for identity encoding) and no total timeout applies:
    streams may last many minutes; a stalled read is bounded by ``sock_read``. Cookies are neither kept nor
    sent: one session serves every tenant, and a cookie an upstream set in reply to one caller must not
    travel with another's requests.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True),
        timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=600),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
    )
