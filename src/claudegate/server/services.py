"""Everything the gateway runs on, opened once at start-up and closed at shutdown, passed down explicitly."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp

from claudegate.accounting.metrics import GatewayMetrics
from claudegate.accounting.prices import PriceTable
from claudegate.accounting.usage import UsageWriter
from claudegate.config import ANTHROPIC_URL, Settings
from claudegate.keys import KeyResolver
from claudegate.simulator.server import SimulatorServer
from claudegate.simulator.settings import SimulatorSettings
from claudegate.store import Store
from claudegate.upstream.target import Upstream, new_session

__all__ = ["Services", "open_services"]

logger = logging.getLogger(__name__)

_SIMULATOR_KEY = "sk-simulator-embedded"  # the embedded simulator accepts any key; this one is not a secret


@dataclass(slots=True)
class Services:
    settings: Settings
    store: Store
    resolver: KeyResolver
    writer: UsageWriter
    prices: PriceTable
    metrics: GatewayMetrics
    upstream: Upstream
    session: aiohttp.ClientSession
    simulator: SimulatorServer | None = None

    async def close(self) -> None:
        await self.writer.close()
        await self.session.close()
        if self.simulator is not None:
            await self.simulator.stop()
        await self.store.close()


async def open_services(settings: Settings) -> Services:
    store = await Store.open(settings.database_url)
    writer = UsageWriter(
        store.usage,
        flush_interval_s=settings.usage_flush_interval_s,
        batch_size=settings.usage_batch_size,
        spill_file=settings.usage_spill_file,
    )
    await writer.start()
    simulator = None
    upstream_url = settings.resolved_upstream_url
    if upstream_url is None:
        simulator = SimulatorServer(SimulatorSettings(tier=settings.simulator_tier))
        await simulator.start()
        upstream = Upstream("simulator", simulator.url, _SIMULATOR_KEY)
    else:
        api_key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else ""
        name = "anthropic" if upstream_url == ANTHROPIC_URL else "upstream"
        upstream = Upstream(name, upstream_url.rstrip("/"), api_key)
    return Services(
        settings=settings,
        store=store,
        resolver=KeyResolver(store.keys, ttl_s=settings.key_cache_ttl_s),
        writer=writer,
        prices=PriceTable.load(settings.prices_file),
        metrics=GatewayMetrics(),
        upstream=upstream,
        session=new_session(),
        simulator=simulator,
    )
