"""Message Batches through the gateway: a batch is visible only to the organisation that created it.

The upstream account is shared by every organisation, so ownership is recorded at creation and checked on
every later call; listing reads the organisation's own batch ids from the store. A batch is created on the
preferred upstream, and the upstream is recorded with its owner: every later call about it goes there, even
once another upstream is preferred. ``results_url`` is rewritten to point at the gateway, so clients that
follow it stay behind the gateway's keys.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from claudegate.errors import InvalidRequestError, NotFoundError
from claudegate.pipeline.relay import forwarded_headers, unreachable
from claudegate.runtime.asgi import send_json
from claudegate.runtime.batch_usage import batch_usage_records
from claudegate.runtime.call import MAX_BATCH_BODY_BYTES, GatewayCall, read_json_body
from claudegate.runtime.files import check_cited_files
from claudegate.runtime.proxy import forward
from claudegate.runtime.resource_path import resource_path
from claudegate.store.rows import BatchOwner
from claudegate.upstream.target import Upstream
from claudegate.wire.pagination import page_params
from claudegate.wire.paths import BATCH_ID, valid_id

if TYPE_CHECKING:
    from claudegate.runtime.services import Services

__all__ = ["dispatch"]

_PREFIX = "/v1/messages/batches"
_ITEM_ACTIONS = {None: ("GET", "DELETE"), "cancel": ("POST",), "results": ("GET",)}


async def dispatch(services: Services, call: GatewayCall) -> None:
    method, batch_id, action = resource_path(call, _PREFIX, _ITEM_ACTIONS)
    if batch_id is None:
        await (_create if method == "POST" else _list)(services, call)
        return
    owner = await _owned(services, call, batch_id)
    upstream = services.upstream_named(owner.upstream)
    if action == "results":
        org_name = call.identity.org_name if call.identity is not None else str(owner.org_id)
        await forward(
            call, services, rewrite=_results_accountant(services, owner, org_name), upstream=upstream
        )
    elif method == "DELETE":
        await forward(call, services, rewrite=_forgetter(services, batch_id), upstream=upstream)
    else:
        await forward(call, services, rewrite=_rewriter(services, call, record=None), upstream=upstream)


def _forgetter(services: Services, batch_id: str) -> Any:
    """Forget a batch once the upstream has deleted it, so listings no longer count it."""

    async def forget(status: int, body: bytes) -> bytes:
        if status == 200:
            await services.store.batches.forget_batch(batch_id)
        return body

    return forget


async def _owned(services: Services, call: GatewayCall, batch_id: str) -> BatchOwner:
    assert call.identity is not None
    if not valid_id(BATCH_ID, batch_id):  # not an id at all: never looked up, never forwarded
        raise NotFoundError(f"Message batch {batch_id} not found.")
    owner = await services.store.batches.get_batch_owner(batch_id)
    if owner is None or owner.org_id != call.identity.org_id:
        # The same answer whether the batch is another organisation's or does not exist: ids leak nothing.
        raise NotFoundError(f"Message batch {batch_id} not found.")
    return owner


def _results_accountant(services: Services, owner: BatchOwner, org_name: str) -> Any:
    """Record the usage of a batch's requests the first time its results pass through the gateway: one
    record per processed request (succeeded ones with their tokens and cost at batch prices, errored ones
    with their error), attributed to whoever created the batch. The results pass on unchanged."""

    async def account(status: int, body: bytes) -> bytes:
        if status == 200 and await services.store.batches.claim_accounting(owner.batch_id):
            for record in batch_usage_records(owner, body, services.prices):
                services.writer.submit(record)
                services.metrics.observe_spend(
                    model=record.model or "unknown",
                    org=org_name,
                    tokens=record.usage,
                    cost=record.cost_usd,
                )
        return body

    return account


def _rewriter(services: Services, call: GatewayCall, *, record: Upstream | None) -> Any:
    """Point ``results_url`` at the gateway; on creation (``record``: the upstream it was created on),
    record ownership before the client sees the id (a client that retrieves its batch at once must find it
    recorded)."""
    base = call.base_url()

    async def rewrite(status: int, body: bytes) -> bytes:
        if status != 200:
            return body
        data = orjson.loads(body)
        if not isinstance(data, dict):
            return body
        if record is not None:
            identity = call.identity
            assert identity is not None
            await services.store.batches.record_batch(
                data["id"],
                org_id=identity.org_id,
                user_id=identity.user_id,
                key_id=identity.key_id,
                upstream=record.name,
            )
        if data.get("results_url"):
            data["results_url"] = f"{base}{_PREFIX}/{data['id']}/results"
            return orjson.dumps(data)
        return body

    return rewrite


async def _create(services: Services, call: GatewayCall) -> None:
    body = await read_json_body(call, MAX_BATCH_BODY_BYTES)
    assert call.identity is not None
    requests = body.get("requests")
    for request in requests if isinstance(requests, list) else []:
        params = request.get("params") if isinstance(request, dict) else None
        if isinstance(params, dict):
            await check_cited_files(services, call.identity.org_id, params)
    upstream = services.upstream
    await forward(call, services, rewrite=_rewriter(services, call, record=upstream), upstream=upstream)


async def _list(services: Services, call: GatewayCall) -> None:
    assert call.identity is not None
    query = dict(
        pair.split("=", 1) if "=" in pair else (pair, "")
        for pair in call.scope.get("query_string", b"").decode("latin-1").split("&")
        if pair
    )
    before_id, after_id, limit = page_params(query)
    for name, cursor in (("before_id", before_id), ("after_id", after_id)):
        if cursor is not None and not valid_id(BATCH_ID, cursor):
            raise InvalidRequestError(f"{name}: {cursor!r} is not a message batch id")
    page = await services.store.batches.list_batch_ids(
        call.identity.org_id, limit=limit, after_id=after_id, before_id=before_id
    )

    async def fetch(batch_id: str, upstream_name: str | None) -> dict[str, Any] | None:
        upstream = services.upstream_named(upstream_name)
        headers = forwarded_headers(call.scope["headers"], upstream)
        url = f"{upstream.base_url}{_PREFIX}/{batch_id}"
        try:
            status, _, body = await services.http.fetch("GET", url, headers)
        except (ConnectionError, TimeoutError) as error:
            raise unreachable(upstream, error) from None
        if status == 404:  # deleted upstream since it was recorded (not through the gateway)
            await services.store.batches.forget_batch(batch_id)
        return orjson.loads(body) if status == 200 else None

    found = await asyncio.gather(
        *(fetch(batch_id, name) for batch_id, name in zip(page.ids, page.upstreams, strict=True))
    )
    base = call.base_url()
    data = []
    for batch in found:
        if batch is None:
            continue  # gone upstream
        if batch.get("results_url"):
            batch["results_url"] = f"{base}{_PREFIX}/{batch['id']}/results"
        data.append(batch)
    # The cursors name batches the page shows: one gone upstream could not be paged from.
    first_id = data[0]["id"] if data else None
    last_id = data[-1]["id"] if data else None
    body = orjson.dumps({"data": data, "has_more": page.has_more, "first_id": first_id, "last_id": last_id})
    await send_json(call.send, 200, body, [call.id_header])
