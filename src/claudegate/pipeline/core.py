"""The pipeline: describe the call → admit (pipeline/lease.py: budget, tenant limits, an upstream's queue and
breaker) → dispatch (pipeline/attempts.py: retries, failover, fallback models, the relay) → settle (the lease
on leaving; pipeline/accounting.py: the usage record).

Every admitted call ends in exactly one reply to its sink and one usage record, through upstream faults,
retries, client disconnects and shutdown, and every reservation it took is settled or given back on the way
out, whichever way that is (the lease is an async context manager).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from claudegate.alerts import Alerts
from claudegate.errors import ClaudegateError
from claudegate.flow.estimator import TokenEstimator
from claudegate.flow.limits import Lanes
from claudegate.flow.retry import RetryPolicy
from claudegate.pipeline.accounting import Accountant
from claudegate.pipeline.attempts import Dispatcher
from claudegate.pipeline.budgets import BudgetGate
from claudegate.pipeline.lease import Admission, Lease
from claudegate.pipeline.places import LaneQueues
from claudegate.pipeline.relay import ClientGone, ReplyResult, UpstreamDropped
from claudegate.pipeline.request import CallRequest
from claudegate.pipeline.sink import ResponseSink
from claudegate.pipeline.tenants import TenantGate
from claudegate.pipeline.tracing import CallTracing, TracedSink
from claudegate.upstream.http import HttpClient
from claudegate.upstream.pool import UpstreamPool
from claudegate.wire.models import ModelCatalog

__all__ = ["CLIENT_CLOSED", "SHUTTING_DOWN", "Pipeline"]

logger = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # the status usage records use for a call its client abandoned (nginx's convention)
SHUTTING_DOWN = 529  # the status of a call stopped by the gateway's shutdown before its reply began


class Pipeline:
    def __init__(
        self,
        *,
        pool: UpstreamPool,
        lanes: Lanes,
        http: HttpClient,
        tenants: TenantGate,
        estimator: TokenEstimator,
        accountant: Accountant,
        catalog: ModelCatalog,
        retry: RetryPolicy,
        rng: random.Random | None = None,
        budgets: BudgetGate | None = None,
        tracing: CallTracing | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        self.pool = pool
        self.lanes = lanes
        self._queues = LaneQueues(lanes)
        self.admission = Admission(
            pool=pool,
            queues=self._queues,
            tenants=tenants,
            estimator=estimator,
            catalog=catalog,
            budgets=budgets,
            alerts=alerts,
        )
        self._dispatcher = Dispatcher(pool=pool, http=http, retry=retry, rng=rng)
        self._accountant = accountant
        self._tracing = tracing  # None: no tracing, and no cost for it

    def close_tracing(self) -> None:
        """Send the spans still buffered (at shutdown)."""
        if self._tracing is not None:
            self._tracing.close()

    def queue_states(self) -> list[tuple[str, str, int, int]]:
        """(upstream, model class, calls waiting, calls in flight) of each admission queue, for metrics."""
        return self._queues.states()

    def breaker_states(self) -> list[tuple[str, str]]:
        """(upstream, breaker state) of each upstream, for metrics."""
        now = time.monotonic()
        return [(member.name, member.breaker.state(now).value) for member in self.pool.members]

    def waiting(self, upstream: str) -> int:
        """Calls waiting for their turn at one upstream, over its rate classes (the console's live page)."""
        return self._queues.waiting(upstream)

    async def run(self, call: CallRequest, sink: ResponseSink) -> ReplyResult:
        """Run one call to its end. ClaudegateError means nothing was sent to the sink: the front door
        answers it; every other outcome has been written to the sink already."""
        result = ReplyResult()
        trace = self._tracing.start(call) if self._tracing is not None else None
        if trace is not None:
            sink = TracedSink(sink, trace.reply_headers)
        lease: Lease | None = None
        try:
            lease = self.admission.admit(call, sink, result, trace)
            async with lease:
                await self._dispatcher.dispatch(lease, sink, result, trace)
        except ClaudegateError as error:
            result.status, result.error_type = error.status, error.error_type
            self._accountant.metrics.refused(error.error_type)
            raise
        except ClientGone:
            if sink.shut_down:
                # The gateway stopped the call at shutdown; the front door ends the reply with an error. A
                # stream keeps its status (200) and the tokens it produced so far.
                result.status, result.error_type = result.status or SHUTTING_DOWN, "gateway_shutdown"
            else:
                result.status, result.error_type, result.client_gone = (
                    CLIENT_CLOSED,
                    "client_disconnected",
                    True,
                )
        except asyncio.CancelledError:
            # The caller's task was cancelled (an in-process caller gave up, or shutdown): it left.
            result.status, result.error_type, result.client_gone = CLIENT_CLOSED, "client_disconnected", True
            raise
        except UpstreamDropped as error:
            logger.warning(
                "upstream %s cut a reply short (%s); ending the client's reply with an error (request %s)",
                result.upstream,
                error,
                call.request_id,
            )
            raise
        finally:
            attempts = max(1, result.attempts)
            # The lease's call: after a fallback, the model that was tried last.
            last_call = lease.call if lease is not None else call
            cost = self._accountant.record(last_call, result, upstream=result.upstream, attempts=attempts)
            if trace is not None:
                trace.end(result, cost_usd=float(cost) if cost is not None else None, attempts=attempts)
        return result

    def record_refusal(self, call: CallRequest, error: ClaudegateError | None) -> None:
        """The usage record of an authenticated call refused before the pipeline ran (bad input), or of one
        whose client left while still sending it (``error`` None)."""
        result = ReplyResult()
        if error is None:
            result.status, result.error_type, result.client_gone = CLIENT_CLOSED, "client_disconnected", True
        else:
            result.status, result.error_type = error.status, error.error_type
        self._accountant.record(call, result, upstream=None, attempts=1)

    def reconfigure(self, *, retry: RetryPolicy, changed_upstreams: set[str]) -> None:
        """A live reload: new retry settings, and fresh queues for upstreams whose member was replaced
        (calls waiting in the old queues are admitted by them as before)."""
        self._dispatcher.retry = retry
        self._queues.forget(changed_upstreams)

    def record_cached(self, call: CallRequest, result: ReplyResult) -> None:
        """The usage record of a call answered from the gateway's response cache: no upstream, no cost."""
        self._accountant.record(call, result, upstream=None, attempts=0, cached=True)
