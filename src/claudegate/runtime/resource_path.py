"""The routes of an upstream-owned resource (message batches, files): ``PREFIX`` for the collection, and
``PREFIX/{id}`` or ``PREFIX/{id}/{action}`` for one item, each with the methods it answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from claudegate.errors import MethodNotAllowedError, NotFoundError
from claudegate.runtime.call import GatewayCall

__all__ = ["ResourcePath", "resource_path"]

_COLLECTION_METHODS = ("GET", "POST")  # list, and create (or upload)


class ResourcePath(NamedTuple):
    """Where a call goes: the collection (``item_id`` None), or one item and its action (None: the item)."""

    method: str
    item_id: str | None = None
    action: str | None = None


def resource_path(
    call: GatewayCall, prefix: str, item_actions: Mapping[str | None, tuple[str, ...]]
) -> ResourcePath:
    """The route of ``call`` under ``prefix``, given the methods each item action answers; a 404 for a path
    that is no route, a 405 for a method its route does not answer."""
    path: str = call.scope["path"]
    method: str = call.scope["method"]
    rest = path[len(prefix) :].strip("/")
    parts = rest.split("/") if rest else []
    if not parts:
        if method not in _COLLECTION_METHODS:
            raise MethodNotAllowedError(method, path, _COLLECTION_METHODS)
        return ResourcePath(method)
    action = parts[1] if len(parts) > 1 else None
    if len(parts) > 2 or action not in item_actions:
        raise NotFoundError(f"Not Found: {method} {path} is not a route of this API")
    if method not in item_actions[action]:
        raise MethodNotAllowedError(method, path, item_actions[action])
    return ResourcePath(method, parts[0], action)
