"""Dispatch: an admitted call's attempts, with retries, failover and fallback models, until one reply is
relayed to the sink.

Retries happen only before any byte of the reply has reached the caller, only while the deadline allows,
and each retry goes back through its lane's queue (``Lease.retry``), so retrying never provokes the 429s it
is recovering from. Each attempt ends its place on the upstream itself when it knows how it went (served,
unserved, throttled); whatever an exception leaves open, the lease settles when the call leaves it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from claudegate.errors import ApiError, ClaudegateError, GatewayTimeoutError
from claudegate.flow.breaker import BreakerState
from claudegate.flow.retry import RetryPolicy, retry_after_seconds, should_retry_status
from claudegate.pipeline.lease import Lease
from claudegate.pipeline.places import LanePlace
from claudegate.pipeline.policies import with_model
from claudegate.pipeline.relay import ClientGone, ReplyResult, forwarded_headers, open_reply, relay
from claudegate.pipeline.request import CallRequest
from claudegate.pipeline.sink import ResponseSink
from claudegate.pipeline.tracing import AttemptSpan, CallSpan
from claudegate.upstream.http import HttpClient, HttpResponse
from claudegate.upstream.pool import UpstreamPool

__all__ = ["Dispatcher"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Failure:
    """A failed attempt that may be retried: an error reply not yet relayed, or an unreachable upstream."""

    error: ClaudegateError | None = None
    response: HttpResponse | None = None
    body: bytes = b""


class Dispatcher:
    def __init__(
        self, *, pool: UpstreamPool, http: HttpClient, retry: RetryPolicy, rng: random.Random | None = None
    ) -> None:
        self.pool = pool
        self.retry = retry
        self._http = http
        self._rng = rng or random.Random()

    async def dispatch(
        self, lease: Lease, sink: ResponseSink, result: ReplyResult, trace: CallSpan | None = None
    ) -> None:
        """Dispatch the admitted call to its model, then, while that model is overloaded or unavailable, to
        each of its policy's fallbacks in turn (pipeline/policies.py)."""
        while not await self._with_retries(lease, sink, result, trace):
            call = lease.call
            model = call.fallbacks[0]
            logger.info(
                "model %s is unavailable; policy %s falls back to %s (request %s)",
                call.model,
                call.policy,
                model,
                call.request_id,
            )
            await lease.fall_back(
                dataclasses.replace(
                    call, model=model, body=with_model(call.body, model), fallbacks=call.fallbacks[1:]
                )
            )

    async def _with_retries(
        self, lease: Lease, sink: ResponseSink, result: ReplyResult, trace: CallSpan | None
    ) -> bool:
        """Attempts of the lease's call, retried and failed over. False (nothing sent to the sink) when the
        call's model failed, no other upstream is left to try and the call has a fallback model to try."""
        failed_on: set[str] = set()
        call = lease.call
        loop = asyncio.get_running_loop()  # deadlines are on the loop's clock (time.monotonic() in service)
        while True:
            place = lease.place
            assert place is not None  # the lease holds a place between admissions
            member = place.member
            result.attempts += 1
            result.upstream = member.name
            attempt = (
                trace.attempt(member.name, member.upstream.base_url, result.attempts, call.model or "unknown")
                if trace is not None
                else None
            )
            if attempt is None:  # untraced: no extra coroutine on the hot path
                failure = await self._attempt(call, sink, result, place)
            else:
                failure = await self._traced_attempt(call, sink, result, place, attempt)
            if failure is None:
                return True
            logger.debug(
                "request %s: attempt %d on %s failed (%s)",
                call.request_id,
                result.attempts,
                member.name,
                failure.response.status if failure.response is not None else failure.error,
            )
            failed_on.add(member.name)
            headers = failure.response.headers if failure.response is not None else {}
            delay = self.retry.delay(result.attempts - 1, headers, self._rng.random())
            if self._untried_upstream_open(call, failed_on):
                delay = 0.0  # the next attempt fails over to an upstream this call has not tried yet
            elif call.fallbacks and loop.time() < call.deadline:
                # Another model serves now rather than this one after a backoff.
                if failure.response is not None:
                    failure.response.release()
                return False
            if not self.retry.may_retry(
                result.attempts, delay, loop.time(), call.deadline - place.queue.reply_start(call.stream)
            ):
                break
            if failure.response is not None:
                failure.response.release()
            if await _client_left_during(sink, delay):
                raise ClientGone
            await lease.retry(frozenset(failed_on))
        # Out of attempts or of time: the last failure is the answer.
        if failure.response is not None:
            try:
                await relay(failure.response, sink, result, body=failure.body)
            finally:
                failure.response.release()
            return True
        assert failure.error is not None
        raise failure.error

    def _untried_upstream_open(self, call: CallRequest, failed_on: set[str]) -> bool:
        """Whether an upstream this call has not failed on takes calls now (its breaker closed)."""
        now = time.monotonic()
        return any(
            member.name not in failed_on and member.breaker.state(now) is BreakerState.CLOSED
            for member in self.pool.candidates(call.sticky_key)
        )

    async def _traced_attempt(
        self,
        call: CallRequest,
        sink: ResponseSink,
        result: ReplyResult,
        place: LanePlace,
        attempt: AttemptSpan,
    ) -> _Failure | None:
        """``_attempt`` inside the attempt's span."""
        try:
            failure = await self._attempt(call, sink, result, place, trace_headers=attempt)
        except BaseException as error:
            attempt.end(result.status, result.error_type or type(error).__name__)
            raise
        if failure is None:
            attempt.end(result.status, result.error_type if result.status >= 400 else None)
        elif failure.response is not None:
            attempt.end(failure.response.status, f"http_{failure.response.status}")
        else:
            attempt.end(None, failure.error.error_type if failure.error is not None else "error")
        return failure

    async def _attempt(
        self,
        call: CallRequest,
        sink: ResponseSink,
        result: ReplyResult,
        place: LanePlace,
        trace_headers: AttemptSpan | None = None,
    ) -> _Failure | None:
        """One try on the upstream of ``place``. Returns a failure worth retrying (its place given back), or
        None once the reply is relayed (its place settled with the reply's usage)."""
        member = place.member
        upstream = member.upstream
        response: HttpResponse | None = None
        headers = forwarded_headers(call.headers, upstream)
        if trace_headers is not None:
            headers = trace_headers.with_context(headers)
        place.dispatch()
        seen: dict[str, Any] = {
            "upstream": member.name,
            "began_ms": round((place.began - call.started) * 1000, 3),
        }
        result.attempt_log.append(seen)
        try:
            try:
                response = await open_reply(
                    self._http,
                    upstream,
                    path_and_query=call.path_and_query,
                    headers=headers,
                    body=call.body,
                    sink=sink,
                )
            except (ApiError, GatewayTimeoutError) as error:
                seen.update(status=error.status, error_type=error.error_type)
                await place.unserved()
                return _Failure(error=error)
            await place.correct(response.headers)
            status = response.status
            seen.update(
                status=status,
                upstream_request_id=response.headers.get("request-id"),
                first_byte_ms=round((place.first_byte or 0.0) * 1000, 3),
            )
            if status >= 400 and should_retry_status(status, response.headers):
                body = await response.read()
                if status == 429:
                    await place.throttled(retry_after_seconds(response.headers))
                else:
                    await place.unserved()
                failure = _Failure(response=response, body=body)
                response = None  # released by whoever relays or drops the failure
                return failure
            whole: bytes | None = None
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                # Read a whole reply before relaying it: one cut short has sent nothing to the client yet,
                # so it is retried like an upstream that could not be reached.
                try:
                    whole = await response.read()
                except BaseException as error:
                    # Nothing of this reply reaches the client: its estimate goes back to the lane.
                    failed = isinstance(error, ConnectionError | TimeoutError) and not sink.gone.is_set()
                    await place.unserved(blame=failed)
                    if not isinstance(error, ConnectionError | TimeoutError):
                        raise
                    if not failed:
                        result.client_gone = True
                        raise ClientGone from None
                    return _Failure(
                        error=ApiError(
                            f"The upstream {member.name} closed the connection before its reply was complete"
                        )
                    )
            # A reply cut short here (the client left, the upstream dropped it, the call was cancelled) is
            # settled by the lease with what the relay counted of it.
            await relay(response, sink, result, body=whole)
            await place.settle(result)
            return None
        finally:
            seen["ms"] = round((time.perf_counter() - place.began) * 1000, 3)
            if response is not None:
                response.release()


async def _client_left_during(sink: ResponseSink, seconds: float) -> bool:
    """Sleep ``seconds``, or less if the client leaves; say whether it left."""
    try:
        await asyncio.wait_for(sink.gone.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
