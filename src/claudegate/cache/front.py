"""Answering Messages calls from the response cache, and sharing one upstream call between identical ones.

A call is cached when its request says ``x-claudegate-cache: on`` (``off`` opts out, ``refresh`` skips the
lookup and stores the fresh reply); without that header, when its key's ``cache_replies`` setting says so
(``claudegate keys limits ID --cache on|off``); and when the key leaves it to its organisation, when the
organisation is listed in ``cache_orgs``.

The key is exact: the organisation, the path and query, the ``anthropic-version`` and ``anthropic-beta``
headers, and the body as the same JSON value (whitespace and escapes normalised, member order kept: the
order of a tool's properties reaches the model, so two bodies that differ only there may not share a reply).
Nothing is removed from the body: every field, ``metadata`` and ``temperature`` included, takes part.

Only complete successful replies are stored (status 200, no error event, the client still there at the end);
a stream is stored as the bytes the client received and replayed as the same bytes. While a call is in
flight, an identical one waits for it and gets its reply from the cache once it is complete (a stream
follower thus receives the whole stream at once, after the leader's last byte); if the leader fails, each
waiting call goes upstream itself.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
from typing import Any, Protocol

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from claudegate.cache.store import CachedReply
from claudegate.keys import Identity
from claudegate.pipeline.relay import ReplyResult
from claudegate.pipeline.request import CallRequest
from claudegate.pipeline.sink import RawHeaders, ResponseSink

__all__ = ["CACHE_HEADER", "CacheMode", "CachedCalls", "ReplyCache", "cache_key"]

CACHE_HEADER = b"x-claudegate-cache"
_KEYED_HEADERS = (b"anthropic-version", b"anthropic-beta")
# Reply headers that describe the original upstream call, not the reply: a replay must not repeat them.
_NOT_REPLAYED = (b"request-id", b"x-claudegate-request-id", b"retry-after", b"anthropic-ratelimit-")


class CacheMode(enum.Enum):
    OFF = "off"
    ON = "on"
    REFRESH = "refresh"


class ReplyCache(Protocol):
    async def get(self, key: str) -> CachedReply | None: ...

    async def put(self, key: str, reply: CachedReply) -> None: ...

    async def close(self) -> None: ...


class Pipeline(Protocol):
    async def run(self, call: CallRequest, sink: ResponseSink) -> ReplyResult: ...

    def record_cached(self, call: CallRequest, result: ReplyResult) -> None: ...

    def record_refusal(self, call: CallRequest, error: Any) -> None: ...


def cache_key(identity: Identity, path_and_query: str, headers: RawHeaders, body: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    digest.update(f"{identity.org_id}\0{path_and_query}\0".encode())
    for wanted in _KEYED_HEADERS:
        for name, value in headers:
            if name == wanted:
                digest.update(value)
        digest.update(b"\0")
    digest.update(orjson.dumps(body))
    return digest.hexdigest()


class _CacheMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.hits = Counter(
            "claudegate_cache_hits", "Calls answered from the response cache.", ["org"], registry=registry
        )
        self.misses = Counter(
            "claudegate_cache_misses",
            "Cacheable calls that went upstream (nothing cached, or a refresh).",
            ["org"],
            registry=registry,
        )
        self.stored = Counter(
            "claudegate_cache_stores", "Replies stored in the response cache.", registry=registry
        )
        self.shared = Counter(
            "claudegate_cache_shared",
            "Calls that waited for an identical call in flight instead of going upstream.",
            registry=registry,
        )
        self.bytes = Gauge("claudegate_cache_bytes", "Bytes the response cache holds.", registry=registry)


class _RecordingSink:
    """Relays a reply to the client and keeps a copy of it."""

    __slots__ = ("_inner", "chunks", "complete", "headers", "status")

    def __init__(self, inner: ResponseSink) -> None:
        self._inner = inner
        self.status = 0
        self.headers: RawHeaders = []
        self.chunks: list[bytes] = []
        self.complete = False

    @property
    def gone(self) -> asyncio.Event:
        return self._inner.gone

    @property
    def shut_down(self) -> bool:
        return self._inner.shut_down

    def on_gone(self, callback: Any) -> None:
        self._inner.on_gone(callback)

    async def start(self, status: int, headers: RawHeaders) -> None:
        self.status = status
        self.headers = list(headers)  # before the front door adds its own to the list
        await self._inner.start(status, headers)

    async def send(self, chunk: bytes, *, more: bool) -> None:
        self.chunks.append(chunk)
        await self._inner.send(chunk, more=more)
        if not more:
            self.complete = True


class CachedCalls:
    """The gateway's Messages calls, through the response cache where it applies."""

    def __init__(
        self,
        pipeline: Pipeline,
        cache: ReplyCache,
        *,
        cache_orgs: list[str],
        registry: CollectorRegistry,
    ) -> None:
        self._pipeline = pipeline
        self._cache = cache
        self._all_orgs = "*" in cache_orgs
        self._orgs = frozenset(cache_orgs)
        self._metrics = _CacheMetrics(registry)
        self._in_flight: dict[str, asyncio.Future[CachedReply | None]] = {}
        held = getattr(cache, "bytes", None)
        if held is not None:  # a cache in this process knows its size; Redis reports its own
            self._metrics.bytes.set_function(lambda: float(getattr(cache, "bytes", 0)))

    def mode(self, identity: Identity, headers: RawHeaders) -> CacheMode:
        for name, value in headers:
            if name == CACHE_HEADER:
                try:
                    return CacheMode(value.decode("latin-1").strip().lower())
                except ValueError:
                    break
        if identity.cache_replies is not None:
            return CacheMode.ON if identity.cache_replies else CacheMode.OFF
        return CacheMode.ON if self._all_orgs or identity.org_name in self._orgs else CacheMode.OFF

    async def run(self, call: CallRequest, body: dict[str, Any], sink: ResponseSink) -> None:
        mode = self.mode(call.identity, call.headers)
        if mode is CacheMode.OFF:
            await self._pipeline.run(call, sink)
            return
        key = cache_key(call.identity, call.path_and_query, call.headers, body)
        org = call.identity.org_name
        if mode is CacheMode.ON:
            reply = await self._cache.get(key)
            if reply is None and (leader := self._in_flight.get(key)) is not None:
                self._metrics.shared.inc()
                reply = await _outcome_of(leader, sink)
                if sink.gone.is_set():
                    self._pipeline.record_refusal(call, None)  # the client left while waiting
                    return
            if reply is not None:
                self._metrics.hits.labels(org).inc()
                await self._replay(call, reply, sink)
                return
        self._metrics.misses.labels(org).inc()
        await self._lead(key, call, sink)

    async def close(self) -> None:
        await self._cache.close()

    async def _lead(self, key: str, call: CallRequest, sink: ResponseSink) -> None:
        outcome: asyncio.Future[CachedReply | None] = asyncio.get_running_loop().create_future()
        self._in_flight.setdefault(key, outcome)
        recorder = _RecordingSink(sink)
        reply: CachedReply | None = None
        try:
            result = await self._pipeline.run(call, recorder)
            if (
                recorder.complete
                and recorder.status == 200
                and result.status == 200
                and result.error_type is None
                and not result.client_gone
            ):
                reply = CachedReply.of(
                    200,
                    [(n, v) for n, v in recorder.headers if not n.startswith(_NOT_REPLAYED)],
                    b"".join(recorder.chunks),
                    result.model or call.model,
                    result.streamed,
                )
                await self._cache.put(key, reply)
                self._metrics.stored.inc()
        finally:
            if self._in_flight.get(key) is outcome:
                del self._in_flight[key]
            outcome.set_result(reply)

    async def _replay(self, call: CallRequest, reply: CachedReply, sink: ResponseSink) -> None:
        result = ReplyResult(status=reply.status, streamed=reply.streamed, model=reply.model)
        try:
            rid = call.request_id.encode()
            await sink.start(reply.status, [*reply.headers, (b"request-id", rid), (CACHE_HEADER, b"hit")])
            await sink.send(reply.body, more=False)
        except OSError:
            result.status, result.error_type, result.client_gone = 499, "client_disconnected", True
        finally:
            self._pipeline.record_cached(call, result)


async def _outcome_of(leader: asyncio.Future[CachedReply | None], sink: ResponseSink) -> CachedReply | None:
    """The leader's cached reply, or None if it failed or this call's client left first."""
    if leader.done():
        return leader.result()
    gone: asyncio.Future[Any] = asyncio.ensure_future(sink.gone.wait())
    waited: list[asyncio.Future[Any]] = [leader, gone]
    try:
        await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    return leader.result() if leader.done() and not sink.gone.is_set() else None
