"""Cached replies in Redis, shared by every gateway process on one prefix: each reply one key holding its
metadata and body, expiring after the time to live. Memory is bounded by Redis's own ``maxmemory`` policy
(``allkeys-lru`` suits a cache); replies bigger than ``max_entry_bytes`` are not stored."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError

from claudegate.cache.store import CachedReply

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisReplyCache"]

logger = logging.getLogger(__name__)

_SEPARATOR = b"\n"  # between the JSON metadata (one line: orjson never writes a newline) and the body


class RedisReplyCache:
    def __init__(self, client: Redis, *, prefix: str, ttl_s: float, max_entry_bytes: int) -> None:
        self._client = client
        self._prefix = prefix + "cache:"
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._max_entry_bytes = max_entry_bytes

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisReplyCache:
        from redis.asyncio import Redis

        return cls(Redis.from_url(url), **kwargs)

    async def get(self, key: str) -> CachedReply | None:
        try:
            stored = await self._client.get(self._prefix + key)
        except (RedisError, OSError) as error:  # Redis away: the call goes upstream, as on a miss
            logger.warning("response cache unavailable (%s): serving from the upstream", error)
            return None
        if not isinstance(stored, bytes):  # None: not cached (the client is made without decode_responses)
            return None
        meta, _, body = stored.partition(_SEPARATOR)
        data = orjson.loads(meta)
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in data["headers"]]
        return CachedReply.of(data["status"], headers, body, data["model"], data["streamed"])

    async def put(self, key: str, reply: CachedReply) -> None:
        if reply.size > self._max_entry_bytes:
            return
        meta = orjson.dumps(
            {
                "status": reply.status,
                "headers": [
                    [name.decode("latin-1"), value.decode("latin-1")] for name, value in reply.headers
                ],
                "model": reply.model,
                "streamed": reply.streamed,
            }
        )
        try:
            await self._client.set(self._prefix + key, meta + _SEPARATOR + reply.body, px=self._ttl_ms)
        except (RedisError, OSError) as error:
            logger.warning("could not store a reply in the response cache: %s", error)

    async def close(self) -> None:
        await self._client.aclose()


def _text_headers(reply: CachedReply) -> list[list[str]]:
    return [[name.decode("latin-1"), value.decode("latin-1")] for name, value in reply.headers]
