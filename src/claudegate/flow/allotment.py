"""What one gateway process holds of the shared token buckets, so that most takes need no trip to Redis.

When a shared bucket is comfortably full, a process that takes from it also takes an *allotment*: a slice of
the bucket (about ``slice_s`` of its refill) that it then spends on later calls by itself, without asking.
Settlements (``charge``: the real token count replacing an estimate; ``observe``: an upstream's report of
what remains) are gathered here and sent in batches. Unused allotment is given back when it expires
(``lease_s`` after it was taken) or when the process stops.

Why the processes together can never take more than the bucket allows: an allotment is taken out of the
shared bucket (atomically, in Redis) before any of it is spent, so it counts as spent from that moment; and
the shared bucket also records, per process, what it has *lent* and not heard back about, refilling only up
to its capacity less what is lent (``redis_scripts``). The shared level plus every unspent allotment thus
never exceeds what the upstream's own bucket holds, however the processes spend them. A process reports what
it spent of its allotments (``used``) and gives back what it did not (``give``) as *changes*, so reports
sent concurrently over different connections may arrive in any order.

This module is bookkeeping only, on a clock passed in (the event loop's): ``redis_state`` does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from claudegate.flow.state import BucketSpec

__all__ = ["Allotments", "BucketReport"]


@dataclass(slots=True)
class BucketReport:
    """What a process tells the shared bucket in one batch (see ``redis_scripts.SYNC``)."""

    spec: BucketSpec
    used: float = 0.0  # spent of its allotment since the last report: no longer lent
    give: float = 0.0  # unspent allotment given back (expired, or the process stops)
    charge: float = 0.0  # net charges (negative: tokens given back)
    observed: float | None = None  # the lowest level an upstream reported since the last report

    @property
    def empty(self) -> bool:
        return not (self.used or self.give or self.charge) and self.observed is None


@dataclass(slots=True)
class _Held:
    spec: BucketSpec
    tokens: float = 0.0
    expires: float = 0.0


@dataclass(slots=True)
class Allotments:
    """A process's allotments of shared buckets and its pending settlements, by bucket key."""

    lease_s: float = 1.0  # an allotment is spent within this long of being taken, or given back
    slice_s: float = 0.25  # an allotment is about this much of the bucket's refill
    _held: dict[str, _Held] = field(default_factory=dict)
    _reports: dict[str, BucketReport] = field(default_factory=dict)

    # -- takes ---------------------------------------------------------------------------------------------

    def take(self, takes: list[tuple[BucketSpec, float]], now: float) -> bool:
        """Spend every amount from the allotments if each holds enough now; spend nothing otherwise."""
        held = self._held
        for spec, amount in takes:
            entry = held.get(spec.key)
            if entry is None or entry.expires <= now or entry.tokens < amount:
                return False
        for spec, amount in takes:
            entry = held[spec.key]
            entry.tokens -= amount
            self._report(spec).used += amount
        return True

    def spend_what_is_held(self, takes: list[tuple[BucketSpec, float]], now: float) -> list[float]:
        """Spend what the allotments hold towards each amount (all of it, or as much as held); the amounts
        still missing, to be taken from the shared buckets. ``restore`` undoes this if that fails."""
        missing: list[float] = []
        for spec, amount in takes:
            entry = self._held.get(spec.key)
            local = min(amount, entry.tokens) if entry is not None and entry.expires > now else 0.0
            if local > 0 and entry is not None:
                entry.tokens -= local
            missing.append(amount - local)
        return missing

    def restore(self, takes: list[tuple[BucketSpec, float]], missing: list[float]) -> None:
        """Give back to the allotments what ``spend_what_is_held`` spent, the shared take having failed."""
        for (spec, amount), short in zip(takes, missing, strict=True):
            if amount > short:
                entry = self._held.get(spec.key)
                if entry is not None:
                    entry.tokens += amount - short

    def spent(self, takes: list[tuple[BucketSpec, float]], missing: list[float]) -> None:
        """The shared take succeeded: what ``spend_what_is_held`` spent locally counts as used."""
        for (spec, amount), short in zip(takes, missing, strict=True):
            if amount > short:
                self._report(spec).used += amount - short

    def granted(self, spec: BucketSpec, extra: float, started: float) -> None:
        """The shared bucket gave ``extra`` to hold, in a call sent at ``started``: it may be spent until
        ``lease_s`` after that (the shared bucket counts it lent for longer, from when it received it)."""
        if extra <= 0:
            return
        entry = self._held.get(spec.key)
        if entry is None:
            entry = self._held[spec.key] = _Held(spec)
        entry.spec = spec
        entry.tokens += extra
        entry.expires = started + self.lease_s

    def want(self, spec: BucketSpec) -> float:
        """How much to ask for beyond a call's needs: a slice of refill, never more than a tenth of the
        bucket (the shared bucket gives it only when it holds as much again beyond the take, and only if
        it is worth a call)."""
        return min(spec.rate * self.slice_s, spec.capacity * 0.1)

    def held(self, key: str, now: float) -> float:
        entry = self._held.get(key)
        return entry.tokens if entry is not None and entry.expires > now else 0.0

    # -- settlements ---------------------------------------------------------------------------------------

    def charge(self, spec: BucketSpec, amount: float, now: float) -> None:
        """A charge: a debt is paid from the allotment if it holds enough (that is spending it), else
        reported with the next batch, like a give-back."""
        entry = self._held.get(spec.key)
        if amount > 0 and entry is not None and entry.expires > now and entry.tokens >= amount:
            entry.tokens -= amount
            self._report(spec).used += amount
            return
        self._report(spec).charge += amount

    def observe(self, spec: BucketSpec, remaining: float) -> None:
        report = self._report(spec)
        report.observed = remaining if report.observed is None else min(report.observed, remaining)

    def _report(self, spec: BucketSpec) -> BucketReport:
        report = self._reports.get(spec.key)
        if report is None:
            report = self._reports[spec.key] = BucketReport(spec)
        else:
            report.spec = spec
        return report

    def reports(
        self, now: float, *, keys: list[str] | None = None, everything: bool = False
    ) -> list[BucketReport]:
        """Take the pending reports (of ``keys`` only, if given), with expired allotments (all of them, with
        ``everything``: the process stops) given back."""
        for key, entry in list(self._held.items()):
            if (everything or entry.expires <= now) and (keys is None or key in keys):
                if entry.tokens > 0:
                    self._report(entry.spec).give += entry.tokens
                del self._held[key]
        if keys is None:
            taken = [report for report in self._reports.values() if not report.empty]
            self._reports.clear()
            return taken
        taken = []
        for key in keys:
            report = self._reports.pop(key, None)
            if report is not None and not report.empty:
                taken.append(report)
        return taken

    def pending(self, key: str) -> float:
        """Net charges not yet reported for ``key`` (a level read from the shared bucket lacks them)."""
        report = self._reports.get(key)
        return report.charge if report is not None else 0.0

    def unsent(self, reports: list[BucketReport]) -> None:
        """Reports that could not be sent: kept for the next batch."""
        for report in reports:
            mine = self._report(report.spec)
            mine.used += report.used
            mine.give += report.give
            mine.charge += report.charge
            if report.observed is not None:
                mine.observed = (
                    report.observed if mine.observed is None else min(mine.observed, report.observed)
                )

    @property
    def has_reports(self) -> bool:
        return any(not report.empty for report in self._reports.values())

    @property
    def busy(self) -> bool:
        """Something to report or give back later: a flush should be scheduled."""
        return bool(self._held) or bool(self._reports)

    def next_expiry(self) -> float | None:
        return min((entry.expires for entry in self._held.values()), default=None)
