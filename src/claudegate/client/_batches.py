"""``client.messages.batches``: the official SDK's Message Batches surface, served by the very code behind the
gateway's ``/v1/messages/batches`` routes (``server.batches``), so ownership (an organisation sees only its
own batches), the upstream each batch lives on, and the usage records of its results are the gateway's.

The routes are driven in process as one ASGI exchange each (no socket): the request is handed to them as an
HTTP request would be, and their answer is read back. ``results_url`` in a batch points at
``http://claudegate.local``, since no gateway is listening; read results with :meth:`AsyncBatches.results`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import orjson
from anthropic.types.messages import DeletedMessageBatch, MessageBatch, MessageBatchIndividualResponse
from starlette.types import Message as AsgiMessage

from claudegate.client._errors import error_from_claudegate, error_from_reply
from claudegate.client._params import API_VERSION, jsonable
from claudegate.errors import ClaudegateError
from claudegate.server import batches as batch_routes
from claudegate.server.call import GatewayCall

if TYPE_CHECKING:
    from claudegate.client._client import AsyncClient

__all__ = ["AsyncBatches", "BatchPage"]

_PREFIX = "/v1/messages/batches"
_HOST = b"claudegate.local"


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
        services = await self._client.open()
        identity = await self._client.identity()
        headers = [
            (b"host", _HOST),
            (b"anthropic-version", API_VERSION.encode()),
            (b"content-type", b"application/json"),
            *(
                (name.lower().encode("latin-1"), str(value).encode("latin-1"))
                for name, value in (self._client.defaults.headers or {}).items()
            ),
        ]
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": query.encode(),
            "headers": headers,
            "scheme": "http",
        }
        replies: list[AsgiMessage] = []
        sent = False

        async def receive() -> AsgiMessage:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body or b"", "more_body": False}
            return {"type": "http.disconnect"}  # asked again only once the answer is complete

        async def send(message: AsgiMessage) -> None:
            replies.append(message)

        call = GatewayCall(scope, receive, send)
        call.identity = identity
        try:
            await batch_routes.dispatch(services, call)
        except ClaudegateError as error:
            raise error_from_claudegate(error, call.request_id, path=path) from None
        status = next(int(m["status"]) for m in replies if m["type"] == "http.response.start")
        reply_headers = next(m.get("headers", []) for m in replies if m["type"] == "http.response.start")
        data = b"".join(m.get("body", b"") for m in replies if m["type"] == "http.response.body")
        if status >= 400:
            raise error_from_reply(status, reply_headers, data, path=path)
        return orjson.loads(data) if parse else data


def _batch_path(message_batch_id: str) -> str:
    if not message_batch_id:
        raise ValueError("Expected a non-empty value for `message_batch_id`")
    return f"{_PREFIX}/{quote(message_batch_id, safe='')}"
