"""``claudegate.AsyncClient``: the official SDK's ``messages`` surface, served by claudegate's pipeline in
this process, with no HTTP hop: flow control (tenant limits, fair deadline-aware admission), retries and
failover, usage records and metrics, as for a call through the gateway.

It opens claudegate's services (database, usage writer, flow state, upstream pool; the embedded simulator
when no upstream is configured) on first use or on ``async with``, once, on the running event loop, and
uses them from that loop only. ``await client.close()`` releases them and flushes the usage records.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any

from claudegate.client._beta import AsyncBeta
from claudegate.client._conversation import AsyncConversation
from claudegate.client._exchange import Exchange
from claudegate.client._identity import LocalIdentity
from claudegate.client._messages import AsyncMessages
from claudegate.client._models import AsyncModels
from claudegate.client._params import Defaults
from claudegate.config import Settings
from claudegate.keys import Identity
from claudegate.pipeline.sink import ResponseSink
from claudegate.runtime.services import Services, open_services

__all__ = ["AsyncClient"]

logger = logging.getLogger(__name__)

# At close, how long calls still running get to finish once told their caller left (a call in a relay ends
# at once; one still queued for admission would wait for its turn, so it is cancelled after this).
_CLOSE_GRACE_S = 2.0


class AsyncClient:
    """An in-process client with the SDK's ``messages`` (``create``, ``stream``, ``count_tokens``, ``parse``,
    ``batches``, ``with_raw_response``), ``models``, ``beta.messages`` (with ``tool_runner``) and
    ``with_options``, plus :meth:`conversation` and ``messages.create_continued`` for long exchanges.

    ``settings``: claudegate's settings (default: ``Settings.load()``, from the environment). The caller is
    the owner of ``key``, a gateway key (``cg-…``) whose limits then apply; without one, the organisation
    ``org`` (and the user ``user``), created if need be, with a key named ``in-process`` for attribution.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        org: str = "default",
        user: str | None = None,
        key: str | None = None,
    ) -> None:
        self._settings = settings
        self._org = org
        self._user = user
        self._key = key
        self._local: LocalIdentity | None = None
        self._services: Services | None = None
        self._opening = asyncio.Lock()
        self._exchanges: set[Exchange] = set()
        self._closed = False
        self._root = self  # the client whose services this one uses (itself, unless made by with_options)
        self.defaults = Defaults()
        self.messages = AsyncMessages(self)
        self.beta = AsyncBeta(self, self.messages)
        self.models = AsyncModels(self)

    @property
    def settings(self) -> Settings:
        """The settings this client runs with (read from the environment once, if none were given)."""
        if self._settings is None:
            self._settings = Settings.load()
        return self._settings

    def conversation(self, *, model: str, max_tokens: int, **options: Any) -> AsyncConversation:
        """A conversation that keeps its history inside the model's context window, compacting older turns
        into a summary, and continues replies cut by ``max_tokens``; see :class:`AsyncConversation`."""
        return AsyncConversation(self, model=model, max_tokens=max_tokens, **options)

    async def __aenter__(self) -> AsyncClient:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def with_options(
        self,
        *,
        timeout: float | None = None,
        deadline_s: float | None = None,
        priority: int | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> AsyncClient:
        """This client with defaults for every call (``timeout``, ``deadline_s``, ``priority``, headers), as
        the SDK's ``with_options``: it shares this client's services, and closing it closes nothing."""
        view = copy.copy(self)
        view.defaults = replace(
            self.defaults,
            timeout=timeout if timeout is not None else self.defaults.timeout,
            deadline_s=deadline_s if deadline_s is not None else self.defaults.deadline_s,
            priority=priority if priority is not None else self.defaults.priority,
            headers={**(self.defaults.headers or {}), **(default_headers or {})} or None,
        )
        view.messages = AsyncMessages(view)
        view.beta = AsyncBeta(view, view.messages)
        view.models = AsyncModels(view)
        return view

    async def open(self) -> Services:
        """Open the services (once; every call does this itself) and return them."""
        if self._root is not self:
            return await self._root.open()
        if self._closed:
            raise RuntimeError("this claudegate client is closed")
        if self._services is None:
            async with self._opening:
                if self._services is None:
                    settings = self.settings
                    self._local = LocalIdentity(self._org, self._user, ttl_s=settings.key_cache_ttl_s)
                    self._services = await open_services(settings)
                    logger.info("claudegate: keys and usage in %s", settings.database_url_redacted)
                    if self._services.simulator is not None:
                        logger.warning(
                            "claudegate: no ANTHROPIC_API_KEY or upstream_url is set, so the embedded "
                            "simulator answers: replies are simulated (and free)"
                        )
        return self._services

    async def identity(self) -> Identity:
        """Who this client's calls are made as (resolved for each call, like the gateway resolves a key;
        a cache makes that cheap). Raises claudegate's AuthenticationError for a bad key."""
        if self._root is not self:
            return await self._root.identity()
        services = await self.open()
        if self._key is not None:
            return await services.resolver.resolve(self._key)
        assert self._local is not None
        return await self._local.get(services.store)

    def start(self, produce: Callable[[ResponseSink], Awaitable[object]]) -> Exchange:
        """Run ``produce`` (a call through the pipeline, or a pass-through) in a task of its own."""
        if self._root is not self:
            return self._root.start(produce)
        if self._closed:
            raise RuntimeError("this claudegate client is closed")
        exchange = Exchange(produce)
        self._exchanges.add(exchange)
        exchange.task.add_done_callback(lambda _task: self._exchanges.discard(exchange))
        return exchange

    async def close(self) -> None:
        """End the calls still running (as if their callers left), then close the services, writing the
        usage records still buffered."""
        if self._closed or self._root is not self:
            return
        self._closed = True
        tasks = set()
        for exchange in list(self._exchanges):
            exchange.leave()
            tasks.add(exchange.task)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=_CLOSE_GRACE_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._services is not None:
            await self._services.close()
            self._services = None
