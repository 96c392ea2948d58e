"""Everything the gateway and the in-process client run on, opened once at start-up and closed at shutdown,
passed down explicitly."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field

from claudegate.accounting.metrics import GatewayMetrics
from claudegate.accounting.prices import PriceTable
from claudegate.accounting.usage import UsageWriter
from claudegate.alerts import Alerts, AlertSettings
from claudegate.cache import CachedCalls, MemoryReplyCache
from claudegate.cache.front import ReplyCache
from claudegate.config import ANTHROPIC_URL, ConfigError, Settings
from claudegate.diagnostics import PayloadLog
from claudegate.flow.breaker import CircuitBreaker
from claudegate.flow.estimator import TokenEstimator
from claudegate.flow.limits import Lanes
from claudegate.flow.retry import RetryPolicy
from claudegate.flow.state import FlowState, MemoryState
from claudegate.keys import KeyResolver
from claudegate.pipeline.accounting import Accountant
from claudegate.pipeline.budgets import BudgetGate
from claudegate.pipeline.core import Pipeline
from claudegate.pipeline.policies import DEFAULT_POLICIES, PolicyBook
from claudegate.pipeline.sink import Departure
from claudegate.pipeline.tenants import TenantGate
from claudegate.pipeline.tracing import CallTracing
from claudegate.runtime.closing import CloseStep, close_in_order
from claudegate.simulator.server import SimulatorServer
from claudegate.simulator.settings import SimulatorSettings
from claudegate.store import Store
from claudegate.store.calls import CallRepository
from claudegate.upstream.http import HttpClient
from claudegate.upstream.pool import PoolMember, UpstreamPool
from claudegate.upstream.probe import BreakerProber
from claudegate.upstream.target import Upstream, new_http_client
from claudegate.wire.models import default_catalog
from claudegate.wire.tiers import Limits, limits_for

__all__ = ["CLOSE_BUDGET_S", "Services", "alert_settings", "flow_state", "open_services", "pool_members"]

logger = logging.getLogger(__name__)

# The time closing the services may take at shutdown, all steps together. A gateway worker's parent kills it
# 15 s past its grace period, of which the server gives connections up to 5 s (server.run): this leaves a
# margin on a loaded machine.
CLOSE_BUDGET_S = 7.0
_USAGE_WRITE_S = 4.0  # the last usage records' write at shutdown; what it leaves goes to the spill file
_SIMULATOR_KEY = "sk-simulator-embedded"  # the embedded simulator accepts any key; this one is not a secret


@dataclass(slots=True)
class Services:
    settings: Settings
    store: Store
    resolver: KeyResolver
    writer: UsageWriter
    prices: PriceTable
    metrics: GatewayMetrics
    pool: UpstreamPool
    state: FlowState
    pipeline: Pipeline
    http: HttpClient
    prober: BreakerProber
    cached_calls: CachedCalls
    alerts: Alerts
    payloads: PayloadLog
    simulator: SimulatorServer | None = None
    # The replies of calls in flight that shutdown may have to stop (stop_for_shutdown) at its grace deadline.
    calls: set[Departure] = field(default_factory=set)
    policies: PolicyBook = field(default_factory=lambda: PolicyBook(DEFAULT_POLICIES))

    @property
    def upstream(self) -> Upstream:
        """The upstream for calls outside flow control (models, count_tokens, new batches): the preferred
        one."""
        return min(self.pool.members, key=lambda member: member.priority).upstream

    def upstream_named(self, name: str | None) -> Upstream:
        """The upstream of that name (where a batch lives); the preferred one if there is none by that name
        (a batch recorded before upstreams were kept, or an upstream since removed from the settings)."""
        for member in self.pool.members:
            if member.name == name:
                return member.upstream
        return self.upstream

    async def close(self, budget_s: float = CLOSE_BUDGET_S) -> None:
        """Close everything within ``budget_s`` whatever Redis, the database or a webhook do (see
        ``closing``): a step that does not finish in time is left behind. Usage records the database does
        not take in time go to the spill file, imported at the next start."""
        steps = [
            CloseStep("the breaker prober", self.prober.stop, 1.0),
            CloseStep("the alerts", self.alerts.close, 2.0),
            CloseStep("the payload log", self.payloads.close, 1.0),
            CloseStep("the reply cache", self.cached_calls.close, 1.0),
            # The writer spills what the database has not taken by its own timeout: a margin to do that.
            CloseStep(
                "the usage writer", lambda: self.writer.close(timeout_s=_USAGE_WRITE_S), _USAGE_WRITE_S + 1
            ),
            # Sends the last spans: blocking I/O, in a thread.
            CloseStep("tracing", lambda: asyncio.to_thread(self.pipeline.close_tracing), 1.0),
            CloseStep("the upstream connections", self.http.close, 1.0),
            CloseStep("the flow state", self.state.close, 1.5),
        ]
        if self.simulator is not None:
            steps.append(CloseStep("the simulator", self.simulator.stop, 1.0))
        steps.append(CloseStep("the database", self.store.close, 1.0))
        await close_in_order(steps, budget_s)


async def open_services(settings: Settings) -> Services:
    store = await Store.open(settings.database_url)
    metrics = GatewayMetrics()
    writer = UsageWriter(
        store.usage,
        flush_interval_s=settings.usage_flush_interval_s,
        batch_size=settings.usage_batch_size,
        spill_file=settings.usage_spill_file,
        on_rejected=metrics.usage_rejected.inc,
    )
    await writer.start()
    simulator = None
    if not settings.upstreams and settings.resolved_upstream_url is None:
        simulator = SimulatorServer(SimulatorSettings(tier=settings.simulator_tier))
        await simulator.start()
    members = pool_members(settings, simulator.url if simulator is not None else None)
    state = flow_state(settings)
    pool = UpstreamPool(members, routing=settings.routing)
    http = new_http_client()
    prices = PriceTable.load(settings.prices_file)
    alerts = Alerts(alert_settings(settings))
    alerts.start()
    budgets = BudgetGate(state, prices, alerts=alerts)
    if not settings.redis_url:
        # Counters in this process start at zero: start them from what the records say was spent.
        await budgets.seed(lambda since: store.budgets.spent_by_tenant(since=since))
    pipeline = Pipeline(
        pool=pool,
        lanes=Lanes(state, burst=settings.flow_burst),
        http=http,
        tenants=TenantGate(state),
        estimator=TokenEstimator(),
        accountant=Accountant(writer, prices, metrics, alerts, log_payloads=settings.log_payloads),
        catalog=default_catalog(),
        retry=RetryPolicy(max_attempts=settings.retry_max_attempts),
        budgets=budgets,
        tracing=_tracing(settings),
        alerts=alerts,
    )
    cached_calls = CachedCalls(
        pipeline,
        reply_cache(settings),
        cache_orgs=settings.cache_orgs,
        registry=metrics.registry,
    )
    payloads = PayloadLog(
        CallRepository(store.engine),
        orgs=settings.payload_log_orgs,
        retention_days=settings.payload_retention_days,
        flush_interval_s=settings.usage_flush_interval_s,
    )
    payloads.start()
    prober = BreakerProber(pool, http, state)
    prober.start()
    return Services(
        settings=settings,
        store=store,
        resolver=KeyResolver(store.keys, ttl_s=settings.key_cache_ttl_s),
        writer=writer,
        prices=prices,
        metrics=metrics,
        pool=pool,
        state=state,
        pipeline=pipeline,
        http=http,
        prober=prober,
        cached_calls=cached_calls,
        alerts=alerts,
        payloads=payloads,
        simulator=simulator,
        policies=PolicyBook.from_settings(settings.model_policies),
    )


def _tracing(settings: Settings) -> CallTracing | None:
    """Traces to the OTLP collector named by ``otel_endpoint``; none (and nothing imported) without one."""
    if settings.otel_endpoint is None:
        return None
    try:
        tracing = CallTracing.to_collector(settings.otel_endpoint, settings.otel_service_name)
    except ImportError:
        raise ConfigError(
            "otel_endpoint is set but OpenTelemetry is not installed: pip install 'claudegate[otel]'"
        ) from None
    logger.info("sending traces to %s/v1/traces", settings.otel_endpoint)
    return tracing


def reply_cache(settings: Settings) -> ReplyCache:
    """The response cache the settings choose: this process's memory, or Redis."""
    if settings.cache_backend == "redis":
        if not settings.redis_url:
            raise ConfigError("cache_backend = redis needs redis_url")
        from claudegate.cache.redis_store import RedisReplyCache

        return RedisReplyCache.from_url(
            settings.redis_url,
            prefix=settings.redis_prefix,
            ttl_s=settings.cache_ttl_s,
            max_entry_bytes=settings.cache_max_bytes,
        )
    return MemoryReplyCache(max_bytes=settings.cache_max_bytes, ttl_s=settings.cache_ttl_s)


def pool_members(settings: Settings, simulator_url: str | None) -> list[PoolMember]:
    """The upstreams the settings name: ``upstreams``, or the one upstream (``upstream_url``, Anthropic, or
    the built-in simulator at ``simulator_url``). Raises ConfigError for an upstream that cannot be made."""
    if settings.upstreams:
        return [_member(settings, upstream) for upstream in settings.upstreams]
    upstream_url = settings.resolved_upstream_url
    tier: str = settings.upstream_tier
    if upstream_url is None:
        if simulator_url is None:
            raise ConfigError("the built-in simulator starts only with the gateway: restart it to use it")
        upstream = Upstream("simulator", simulator_url, _SIMULATOR_KEY)
        tier = _tier(settings.simulator_tier)
    else:
        api_key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else ""
        name = "anthropic" if upstream_url == ANTHROPIC_URL else "upstream"
        upstream = Upstream(name, upstream_url.rstrip("/"), api_key)
    return [
        PoolMember(
            upstream=upstream,
            breaker=_breaker(settings),
            tier=tier,
            max_concurrency=settings.upstream_max_concurrency,
        )
    ]


def alert_settings(settings: Settings) -> AlertSettings:
    return AlertSettings(
        webhooks=tuple(settings.alert_webhooks),
        format=settings.alert_format,
        error_rate=settings.alert_error_rate,
        error_window_s=settings.alert_error_window_s,
        error_min_calls=settings.alert_error_min_calls,
        budget_thresholds=tuple(settings.alert_budget_thresholds),
        repeat_s=settings.alert_repeat_s,
        max_per_minute=settings.alert_max_per_minute,
    )


def _tier(value: str) -> str:
    return value if value in ("1", "2", "3", "4", "unlimited") else "1"


def _breaker(settings: Settings) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=settings.breaker_failure_threshold, open_seconds=settings.breaker_open_s
    )


def flow_state(settings: Settings) -> FlowState:
    """The state flow control shares: in this process, or in Redis under ``redis_prefix``."""
    if settings.redis_url:
        from claudegate.flow.redis_state import RedisState

        return RedisState.from_url(settings.redis_url, prefix=settings.redis_prefix)
    return MemoryState()


def _member(settings: Settings, config: object) -> PoolMember:
    from claudegate.config import UpstreamSettings

    assert isinstance(config, UpstreamSettings)
    if config.api_key is not None:
        api_key = config.api_key.get_secret_value()
    elif config.api_key_env is not None:
        api_key = os.environ.get(config.api_key_env, "")
        if not api_key:
            raise ConfigError(
                f"upstream {config.name!r}: the environment variable {config.api_key_env} is not set"
            )
    else:
        raise ConfigError(f"upstream {config.name!r} needs api_key or api_key_env")
    limits = None
    if config.requests_per_minute or config.input_tokens_per_minute or config.output_tokens_per_minute:
        base = limits_for(config.tier, "sonnet-4")
        limits = Limits(
            config.requests_per_minute or base.requests_per_minute,
            config.input_tokens_per_minute or base.input_tokens_per_minute,
            config.output_tokens_per_minute or base.output_tokens_per_minute,
        )
    return PoolMember(
        upstream=Upstream(config.name, config.url, api_key),
        breaker=_breaker(settings),
        priority=config.priority,
        tier=config.tier,
        limits=limits,
        max_concurrency=config.max_concurrency,
    )
