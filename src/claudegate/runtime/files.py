"""The Files API through the gateway: a file is visible only to the organisation that uploaded it.

As with message batches, the upstream account is shared by every organisation, so ownership is recorded at
upload and checked on every later call; another organisation's file id gets the same 404 as one that does
not exist. Listing reads the organisation's own file ids from the store and each one's metadata from the
upstream it was uploaded to. Messages that cite a file (``{"source": {"type": "file", "file_id": …}}``) are
checked the same way before they are sent (``check_cited_files``).

Uploads are forwarded as the client sent them (a multipart form of up to the API's 500 MB), held in
memory while they pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from claudegate.errors import InvalidRequestError, NotFoundError
from claudegate.pipeline.relay import forwarded_headers, unreachable
from claudegate.runtime.asgi import send_json
from claudegate.runtime.call import MAX_FILE_BODY_BYTES, GatewayCall, read_raw_body
from claudegate.runtime.proxy import forward
from claudegate.runtime.resource_path import resource_path
from claudegate.store.files import FileOwner
from claudegate.wire.file_refs import cited_file_ids
from claudegate.wire.pagination import page_params
from claudegate.wire.paths import FILE_ID, valid_id

if TYPE_CHECKING:
    from claudegate.runtime.services import Services

__all__ = ["check_cited_files", "dispatch", "file_not_found"]

_PREFIX = "/v1/files"
_ITEM_ACTIONS = {None: ("GET", "DELETE"), "content": ("GET",)}
_PAGE_PREFIX = "page_"
_MAX_IDS = 100
_FETCHES_AT_ONCE = 16  # a page may list up to 1,000 files: their metadata is fetched this many at a time


def file_not_found(file_id: str) -> NotFoundError:
    """The answer for a file that does not exist, or is not the caller's: the same either way."""
    return NotFoundError(f"File not found: {file_id}")


async def dispatch(services: Services, call: GatewayCall) -> None:
    method, file_id, _ = resource_path(call, _PREFIX, _ITEM_ACTIONS)
    if file_id is None:
        await (_upload if method == "POST" else _list)(services, call)
        return
    owner = await _owned(services, call, file_id)
    upstream = services.upstream_named(owner.upstream)
    if method == "DELETE":
        await forward(call, services, rewrite=_forgetter(services, owner), upstream=upstream)
    else:
        await forward(call, services, upstream=upstream)


async def _owned(services: Services, call: GatewayCall, file_id: str) -> FileOwner:
    assert call.identity is not None
    if not valid_id(FILE_ID, file_id):  # not an id at all: never looked up, never forwarded
        raise file_not_found(file_id)
    owner = await services.store.files.get_file_owner(file_id)
    if owner is None or owner.org_id != call.identity.org_id:
        raise file_not_found(file_id)
    return owner


def _forgetter(services: Services, owner: FileOwner) -> Any:
    """Once the upstream has deleted the file, forget it, so it leaves the organisation's list too."""

    async def forget(status: int, body: bytes) -> bytes:
        if status == 200:
            await services.store.files.forget_file(owner.file_id)
        return body

    return forget


async def _upload(services: Services, call: GatewayCall) -> None:
    await read_raw_body(call, MAX_FILE_BODY_BYTES)
    identity = call.identity
    assert identity is not None
    upstream = services.upstream

    async def record(status: int, body: bytes) -> bytes:
        # Before the client sees the id: a client that retrieves its file at once must find it recorded.
        if status == 200:
            data = orjson.loads(body)
            if isinstance(data, dict) and isinstance(data.get("id"), str):
                await services.store.files.record_file(
                    data["id"],
                    org_id=identity.org_id,
                    user_id=identity.user_id,
                    key_id=identity.key_id,
                    upstream=upstream.name,
                )
        return body

    await forward(call, services, rewrite=record, upstream=upstream)


async def _list(services: Services, call: GatewayCall) -> None:
    assert call.identity is not None
    pairs = parse_qsl(call.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    query = dict(pairs)
    ids = [value for name, value in pairs if name in ("ids[]", "ids")]
    if ids:
        await _send_page(services, call, await _listed(services, call, ids), has_more=False)
        return
    if "scope_id" in query:
        # Files uploaded through the API belong to no session scope: no file matches a scope filter.
        await _send_page(services, call, [], has_more=False)
        return
    page = query.pop("page", None)
    if page:
        if not page.startswith(_PAGE_PREFIX) or not valid_id(FILE_ID, page[len(_PAGE_PREFIX) :]):
            raise InvalidRequestError(f"page: {page!r} is not a page cursor this API returned")
        if "after_id" in query or "before_id" in query:
            raise InvalidRequestError("page cannot be combined with after_id or before_id")
        query["after_id"] = page[len(_PAGE_PREFIX) :]
    before_id, after_id, limit = page_params(query)
    for name, cursor in (("before_id", before_id), ("after_id", after_id)):
        if cursor is not None and not valid_id(FILE_ID, cursor):
            raise InvalidRequestError(f"{name}: {cursor!r} is not a file id")
    found = await services.store.files.list_file_ids(
        call.identity.org_id, limit=limit, after_id=after_id, before_id=before_id
    )
    data = await _metadata(services, call, zip(found.ids, found.upstreams, strict=True))
    await _send_page(services, call, data, has_more=found.has_more)


async def _listed(services: Services, call: GatewayCall, ids: list[str]) -> list[dict[str, Any]]:
    """The ``ids`` filter: those of the ids that are the organisation's files, in the order asked."""
    assert call.identity is not None
    wanted = list(dict.fromkeys(ids))
    if len(wanted) > _MAX_IDS:
        raise InvalidRequestError(f"ids: at most {_MAX_IDS} ids may be given")
    shaped = [file_id for file_id in wanted if valid_id(FILE_ID, file_id)]
    owned = await services.store.files.owned_by(call.identity.org_id, shaped) if shaped else set()
    owners = [await services.store.files.get_file_owner(file_id) for file_id in shaped if file_id in owned]
    return await _metadata(services, call, ((o.file_id, o.upstream) for o in owners if o is not None))


async def _metadata(
    services: Services, call: GatewayCall, files: Iterable[tuple[str, str | None]]
) -> list[dict[str, Any]]:
    at_once = asyncio.Semaphore(_FETCHES_AT_ONCE)

    async def fetch(file_id: str, upstream_name: str | None) -> dict[str, Any] | None:
        upstream = services.upstream_named(upstream_name)
        headers = forwarded_headers(call.scope["headers"], upstream)
        url = f"{upstream.base_url}{_PREFIX}/{file_id}"
        async with at_once:
            try:
                status, _, body = await services.http.fetch("GET", url, headers)
            except (ConnectionError, TimeoutError) as error:
                raise unreachable(upstream, error) from None
        found = orjson.loads(body) if status == 200 else None
        return found if isinstance(found, dict) else None

    found = await asyncio.gather(*(fetch(file_id, name) for file_id, name in files))
    return [item for item in found if item is not None]  # a file gone upstream since it was recorded


async def _send_page(
    services: Services, call: GatewayCall, data: list[dict[str, Any]], *, has_more: bool
) -> None:
    first_id = data[0]["id"] if data else None
    last_id = data[-1]["id"] if data else None
    body = {
        "data": data,
        "has_more": has_more,
        "first_id": first_id,
        "last_id": last_id,
        # The SDKs' cursor: the next (older) page begins after the last file of this one.
        "next_page": f"{_PAGE_PREFIX}{last_id}" if has_more and last_id else None,
    }
    await send_json(call.send, 200, orjson.dumps(body), [call.id_header])


async def check_cited_files(services: Services, org_id: int, body: dict[str, Any]) -> None:
    """Refuse a Messages body that cites a file the organisation did not upload, exactly as for a file that
    does not exist: the upstream would otherwise read any organisation's file for anyone who knows its id."""
    cited = cited_file_ids(body)
    if not cited:
        return
    shaped = [file_id for file_id in cited if valid_id(FILE_ID, file_id)]
    owned = await services.store.files.owned_by(org_id, shaped) if shaped else set()
    for file_id in cited:
        if file_id not in owned:
            raise file_not_found(file_id)
