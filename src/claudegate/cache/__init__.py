"""The gateway's response cache: identical Messages calls answered once, replayed byte for byte."""

from claudegate.cache.front import CACHE_HEADER, CachedCalls, CacheMode
from claudegate.cache.store import CachedReply, MemoryReplyCache

__all__ = ["CACHE_HEADER", "CacheMode", "CachedCalls", "CachedReply", "MemoryReplyCache"]
