"""``client.messages.batches``: the official SDK's Message Batches surface, served by the very code behind the
gateway's ``/v1/messages/batches`` routes (``runtime.batches``), so ownership (an organisation sees only its
own batches), the upstream each batch lives on, and the usage records of its results are the gateway's.

The routes are driven in process (``_routes.call_route``). ``results_url`` in a batch points at
``http://claudegate.local``, since no gateway is listening; read results with :meth:`AsyncBatches.results`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import orjson
from anthropic.types.messages import DeletedMessageBatch, MessageBatch, MessageBatchIndividualResponse

from claudegate.client._params import jsonable
from claudegate.client._routes import call_route
from claudegate.runtime import batches as batch_routes

if TYPE_CHECKING:
    from claudegate.client._client import AsyncClient

__all__ = ["AsyncBatches", "BatchPage"]

_PREFIX = "/v1/messages/batches"


class BatchPage:
    """One page of ``batches.list``: ``data``, ``has_more``, ``first_id``, ``last_id``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = [MessageBatch.construct(**batch) for batch in data.get("data", [])]
        self.has_more = bool(data.get("has_more"))
        self.first_id: str | None = data.get("first_id")
        self.last_id: str | None = data.get("last_id")


class AsyncBatches:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(self, *, requests: Iterable[Mapping[str, Any]]) -> MessageBatch:
        """Create a batch of up to 100,000 requests (``custom_id`` and ``params`` each)."""
        body = orjson.dumps({"requests": list(requests)}, default=jsonable)
        return MessageBatch.construct(**await self._call("POST", _PREFIX, body=body))

    async def retrieve(self, message_batch_id: str) -> MessageBatch:
        return MessageBatch.construct(**await self._call("GET", _batch_path(message_batch_id)))

    async def list(
        self, *, limit: int | None = None, after_id: str | None = None, before_id: str | None = None
    ) -> BatchPage:
        """This organisation's batches, newest first."""
        query = {k: v for k, v in (("limit", limit), ("after_id", after_id), ("before_id", before_id)) if v}
        return BatchPage(await self._call("GET", _PREFIX, query=urlencode(query)))

    async def cancel(self, message_batch_id: str) -> MessageBatch:
        path = _batch_path(message_batch_id) + "/cancel"
        return MessageBatch.construct(**await self._call("POST", path, body=b""))

    async def delete(self, message_batch_id: str) -> DeletedMessageBatch:
        return DeletedMessageBatch.construct(**await self._call("DELETE", _batch_path(message_batch_id)))

    async def results(self, message_batch_id: str) -> AsyncIterator[MessageBatchIndividualResponse]:
        """The results of an ended batch, one per request (their usage is recorded the first time)."""
        raw = await self._call("GET", _batch_path(message_batch_id) + "/results", parse=False)
        for line in raw.splitlines():
            if line.strip():
                yield MessageBatchIndividualResponse.construct(**orjson.loads(line))

    async def _call(
        self, method: str, path: str, *, body: bytes | None = None, query: str = "", parse: bool = True
    ) -> Any:
        _, data = await call_route(self._client, batch_routes.dispatch, method, path, body=body, query=query)
        return orjson.loads(data) if parse else data


def _batch_path(message_batch_id: str) -> str:
    if not message_batch_id:
        raise ValueError("Expected a non-empty value for `message_batch_id`")
    return f"{_PREFIX}/{quote(message_batch_id, safe='')}"
