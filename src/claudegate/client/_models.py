"""``client.models``: ``list`` and ``retrieve`` as the official SDK's, answered by the preferred upstream (as
the gateway's ``/v1/models`` routes are), outside flow control and unmetered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import orjson
from anthropic.types import ModelInfo

from claudegate.client._errors import error_from_reply, translate
from claudegate.client._exchange import ReplyLost
from claudegate.client._params import API_VERSION, is_given
from claudegate.errors import ClaudegateError
from claudegate.pipeline.relay import ReplyResult, UpstreamDropped, forwarded_headers, open_reply, relay
from claudegate.pipeline.request import new_request_id
from claudegate.pipeline.sink import RawHeaders, ResponseSink
from claudegate.runtime.services import Services

if TYPE_CHECKING:
    from claudegate.client._client import AsyncClient

__all__ = ["AsyncModels", "ModelPage"]

_TRANSLATED = (ClaudegateError, UpstreamDropped, ReplyLost, TimeoutError)


@dataclass(slots=True)
class ModelPage:
    """One page of ``models.list``, as the SDK's page: ``data``, ``has_more``, ``first_id``, ``last_id``;
    ``async for model in page`` goes on through the next pages."""

    data: list[ModelInfo]
    has_more: bool
    first_id: str | None
    last_id: str | None
    _next: Any = field(default=None, repr=False)

    async def __aiter__(self) -> AsyncIterator[ModelInfo]:
        page: ModelPage | None = self
        while page is not None:
            for model in page.data:
                yield model
            page = await page._next(page.last_id) if page.has_more and page._next is not None else None


class AsyncModels:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(
        self,
        *,
        limit: int | None = None,
        before_id: str | None = None,
        after_id: str | None = None,
        extra_headers: Mapping[str, object] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's parameter
    ) -> ModelPage:
        """The models the upstream offers, newest first, a page at a time (``limit``: up to 1,000)."""
        query = {
            name: value
            for name, value in (("limit", limit), ("before_id", before_id), ("after_id", after_id))
            if value is not None and is_given(value)
        }
        path = "/v1/models" + ("?" + urlencode(query) if query else "")
        data = await self._get(path, extra_headers, timeout)

        async def following(last_id: str | None) -> ModelPage:
            return await self.list(
                limit=limit, after_id=last_id, extra_headers=extra_headers, timeout=timeout
            )

        return ModelPage(
            data=[ModelInfo.construct(**model) for model in data.get("data", [])],
            has_more=bool(data.get("has_more")),
            first_id=data.get("first_id"),
            last_id=data.get("last_id"),
            _next=following,
        )

    async def retrieve(
        self,
        model_id: str,
        *,
        extra_headers: Mapping[str, object] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's parameter
    ) -> ModelInfo:
        """One model, by id or alias (``anthropic.NotFoundError`` for one the upstream does not know)."""
        if not model_id:
            raise ValueError(f"Expected a non-empty value for `model_id` but received {model_id!r}")
        return ModelInfo.construct(
            **await self._get(f"/v1/models/{quote(model_id, safe='')}", extra_headers, timeout)
        )

    async def _get(self, path: str, extra_headers: Mapping[str, object] | None, seconds: float | None) -> Any:
        headers = {"anthropic-version": API_VERSION}
        headers.update({name.lower(): str(value) for name, value in (extra_headers or {}).items()})
        raw: RawHeaders = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
        ]
        request_id = new_request_id()
        try:
            services = await self._client.open()
            await self._client.identity()  # a bad key is refused here too, as by the gateway
            exchange = self._client.start(partial(_get, services, path, raw))
            async with asyncio.timeout(seconds):
                status, reply_headers = await exchange.head()
                body = await exchange.read()
        except _TRANSLATED as error:
            if exchange is not None:
                exchange.leave()
            raise translate(error, request_id=request_id, path=path) from None
        if status >= 400:
            raise error_from_reply(status, reply_headers, body, path=path)
        return orjson.loads(body)


async def _get(services: Services, path: str, headers: RawHeaders, sink: ResponseSink) -> None:
    upstream = services.upstream
    response = await open_reply(
        services.http,
        upstream,
        method="GET",
        path_and_query=path,
        headers=forwarded_headers(headers, upstream),
        body=None,
        sink=sink,
    )
    try:
        await relay(response, sink, ReplyResult())
    finally:
        response.release()
