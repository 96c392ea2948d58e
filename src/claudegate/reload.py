"""Live reconfiguration: upstreams, prices, routing and default limits reloaded from the configuration file
without a restart and without dropping a call.

A reload starts on SIGHUP, when the file's modification time changes (polled every ``config_poll_s``), or
from ``POST /admin/reload``. The file (with the environment on top, as at start-up) is read and validated
whole first: an invalid file is refused with the reason (logged, and the admin API's 400), and the running
configuration stays. A valid one is applied by swapping objects, never by editing one a call is using: calls
in flight finish on the upstream member, queue and price table they hold, new calls take the new ones.
Upstreams whose settings did not change keep their member, so their breaker and in-flight count go on.

Settings that shape the process itself (database, Redis, port, admin token, cache, alerts) need a restart;
a reload that changes them applies the rest and says which were left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from claudegate.accounting.prices import PriceTable, PriceTableError
from claudegate.config import ConfigError, Settings
from claudegate.flow.retry import RetryPolicy
from claudegate.runtime.services import Services, pool_members
from claudegate.upstream.pool import PoolMember

__all__ = ["RELOADABLE", "ReloadOutcome", "ReloadRefusedError", "Reloader"]

logger = logging.getLogger(__name__)

RELOADABLE = frozenset(
    {
        "upstreams",
        "upstream_url",
        "anthropic_api_key",
        "upstream_tier",
        "upstream_max_concurrency",
        "prices_file",
        "routing",
        "sticky",
        "default_deadline_s",
        "retry_max_attempts",
        "breaker_failure_threshold",
        "breaker_open_s",
    }
)


class ReloadRefusedError(Exception):
    """The configuration could not be used; the running one stays."""


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    changed: list[str]  # reloadable settings that changed, now applied
    restart_needed: list[str]  # settings that changed but apply only at the next start


class Reloader:
    def __init__(self, services: Services, config_file: Path | None, *, poll_s: float) -> None:
        self._services = services
        self._config_file = config_file
        self._poll_s = poll_s
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._signal = False

    async def reload(self, trigger: str) -> ReloadOutcome:
        """Read, validate and apply the configuration; raises ReloadRefusedError with the reason."""
        async with self._lock:
            try:
                outcome = self._apply(self._read())
            except ReloadRefusedError as refused:
                logger.error("configuration reload (%s) refused, the running one stays: %s", trigger, refused)
                raise
            logger.warning(
                "configuration reloaded (%s): changed %s%s",
                trigger,
                ", ".join(outcome.changed) or "nothing",
                f"; needs a restart: {', '.join(outcome.restart_needed)}" if outcome.restart_needed else "",
            )
            return outcome

    def _read(self) -> tuple[Settings, PriceTable, list[PoolMember]]:
        try:
            settings = Settings.load(self._config_file)
            prices = PriceTable.load(settings.prices_file)
            simulator = self._services.simulator
            members = pool_members(settings, simulator.url if simulator is not None else None)
        except (ConfigError, PriceTableError) as error:
            raise ReloadRefusedError(str(error)) from None
        names = [member.name for member in members]
        if len(set(names)) != len(names):
            raise ReloadRefusedError(f"upstream names must be unique: {names}")
        return settings, prices, members

    def _apply(self, loaded: tuple[Settings, PriceTable, list[PoolMember]]) -> ReloadOutcome:
        new, prices, members = loaded
        services = self._services
        old = services.settings
        differing = [name for name in type(old).model_fields if getattr(old, name) != getattr(new, name)]
        changed = sorted(name for name in differing if name in RELOADABLE)
        # host and port often come from the command line (serve --port), not the file: not a change.
        restart_needed = sorted(
            name for name in differing if name not in RELOADABLE and name not in ("host", "port")
        )
        kept = {member.name: member for member in services.pool.members}
        merged: list[PoolMember] = []
        replaced: set[str] = set()
        for member in members:
            current = kept.get(member.name)
            if current is not None and _same(current, member) and not _breaker_changed(old, new):
                merged.append(current)  # its breaker and in-flight count go on
            else:
                merged.append(member)
                replaced.add(member.name)
        replaced |= set(kept) - {member.name for member in members}
        services.pool.replace(merged, new.routing)
        services.pipeline.reconfigure(
            retry=RetryPolicy(max_attempts=new.retry_max_attempts), changed_upstreams=replaced
        )
        services.prices.replace_with(prices)
        services.settings = old.model_copy(update={name: getattr(new, name) for name in changed})
        return ReloadOutcome(changed=changed, restart_needed=restart_needed)

    # -- triggers -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Watch the file and listen for SIGHUP (where this thread may: the main thread of the process)."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, self._on_signal)
            self._signal = True
        if self._config_file is not None:
            self._task = loop.create_task(self._watch(self._config_file), name="claudegate-config-watch")

    async def stop(self) -> None:
        if self._signal:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._signal = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_signal(self) -> None:
        asyncio.get_running_loop().create_task(self._quietly("SIGHUP"))

    async def _quietly(self, trigger: str) -> None:
        with contextlib.suppress(ReloadRefusedError):  # logged by reload()
            await self.reload(trigger)

    async def _watch(self, path: Path) -> None:
        seen = _mtime(path)
        while True:
            await asyncio.sleep(self._poll_s)
            now = _mtime(path)
            if now != seen:
                seen = now
                await self._quietly(f"{path} changed")


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _same(current: PoolMember, new: PoolMember) -> bool:
    return (
        current.upstream == new.upstream
        and current.priority == new.priority
        and current.tier == new.tier
        and current.limits == new.limits
        and current.max_concurrency == new.max_concurrency
    )


def _breaker_changed(old: Settings, new: Settings) -> bool:
    return (old.breaker_failure_threshold, old.breaker_open_s) != (
        new.breaker_failure_threshold,
        new.breaker_open_s,
    )
