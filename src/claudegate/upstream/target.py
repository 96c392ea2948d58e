"""One upstream and the HTTP client the gateway reaches it with."""

from __future__ import annotations

from dataclasses import dataclass

from claudegate.upstream.http import HttpClient

__all__ = ["Upstream", "new_http_client"]


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    base_url: str  # without a trailing slash
    api_key: str  # sent as x-api-key; never logged

    @property
    def api_key_bytes(self) -> bytes:
        return self.api_key.encode("latin-1")

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        return f"Upstream(name={self.name!r}, base_url={self.base_url!r})"


def new_http_client() -> HttpClient:
    """The gateway's client (upstream/http.py). No total timeout applies: streams may last many minutes; a
    stall of ten minutes without a byte ends a call. No cookies are kept: one client serves every tenant,
    and a cookie an upstream set in reply to one caller must not travel with another's requests."""
    return HttpClient(connect_timeout=10.0, read_timeout=600.0)
