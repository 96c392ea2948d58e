"""claudegate: run Anthropic's Claude in production.

One request pipeline behind three front doors (an Anthropic-compatible HTTP gateway, an in-process client and
chat bots), with a faithful Anthropic API simulator for tests, benchmarks and load tests.

``claudegate.AsyncClient`` and ``claudegate.Client`` are the in-process client (:mod:`claudegate.client`).
They are imported on first use: the SDK and the services behind them take a second or two to import, which
``import claudegate`` (and every ``claudegate`` command) would otherwise pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from claudegate._version import __version__

if TYPE_CHECKING:
    from claudegate.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client", "__version__"]

_LAZY = frozenset({"AsyncClient", "Client"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from claudegate import client

        return getattr(client, name)
    raise AttributeError(f"module 'claudegate' has no attribute {name!r}")
