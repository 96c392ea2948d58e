"""Faults on demand: per request through a header, or at random rates set on the command line.

Header grammar (``x-simulator-fault``)::

    KIND[:ARGUMENT][;times=N]

``times=N`` applies the fault to the first N requests that carry the same header value and the same body,
so a test can script "fail once, then succeed" and watch a client's retry go through.
``model=NAME`` applies the fault only to requests for that model, so a test can make one model overloaded
and watch a client fall back to another.
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from dataclasses import dataclass

import orjson

from claudegate.errors import (
    ERROR_TYPES,
    ApiError,
    BillingError,
    ClaudegateError,
    GatewayTimeoutError,
    InvalidRequestError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    error_for_type,
)
from claudegate.simulator.settings import FAULT_KINDS, FaultRate
from claudegate.simulator.stops import REFUSAL_CATEGORIES

__all__ = ["FAULT_HEADER", "Fault", "FaultInjector", "error_of_type"]

FAULT_HEADER = "x-simulator-fault"
_MAX_TRACKED = 10_000
_MESSAGES = {
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
    "rate_limit_error": "Rate limited",
}


def error_of_type(error_type: str) -> ClaudegateError:
    """The error a ``midstream_error:TYPE`` fault sends when the request did not ask for a stream."""
    message = _MESSAGES.get(error_type, error_type.replace("_", " ").capitalize())
    return error_for_type(error_type, message)


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    argument: str | None = None

    def as_error(self) -> ClaudegateError | None:
        """The error answered instead of a reply, for faults that are plain error responses."""
        if self.kind == "overloaded":
            return OverloadedError("Overloaded")
        if self.kind == "server_error":
            return ApiError("Internal server error")
        if self.kind == "timeout":
            return GatewayTimeoutError("Request timed out")
        if self.kind == "billing":
            return BillingError(
                "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to "
                "upgrade or purchase credits."
            )
        if self.kind == "permission":
            return PermissionDeniedError(
                "Your API key does not have permission to use the specified resource."
            )
        if self.kind == "rate_limit":
            retry_after = float(self.argument) if self.argument else 1.0
            return RateLimitError(
                "This request would exceed the rate limit for your organization. "
                "For details, refer to: https://docs.claude.com/en/api/rate-limits.",
                retry_after=retry_after,
            )
        return None

    @property
    def slow_seconds(self) -> float:
        return float(self.argument or 1.0) if self.kind == "slow" else 0.0


class FaultInjector:
    __slots__ = ("_counts", "_rates", "_rng")

    def __init__(self, rates: tuple[FaultRate, ...], rng: random.Random) -> None:
        self._rates = rates
        self._rng = rng
        self._counts: OrderedDict[bytes, int] = OrderedDict()

    def choose(self, header: str | None, body: bytes) -> Fault | None:
        if header:
            return self._from_header(header, body)
        for rate in self._rates:
            if self._rng.random() < rate.rate:
                return Fault(rate.kind, rate.argument)
        return None

    def _from_header(self, header: str, body: bytes) -> Fault | None:
        spec, _, options = header.partition(";")
        kind, _, argument = spec.strip().partition(":")
        if kind not in FAULT_KINDS:
            raise InvalidRequestError(
                f"{FAULT_HEADER}: unknown fault {kind!r}; known: {', '.join(sorted(FAULT_KINDS))}"
            )
        if kind in ("slow", "rate_limit") and argument:
            try:
                float(argument)
            except ValueError:
                raise InvalidRequestError(
                    f"{FAULT_HEADER}: {argument!r} is not a number of seconds"
                ) from None
        if kind == "midstream_error" and argument and argument not in ERROR_TYPES:
            raise InvalidRequestError(
                f"{FAULT_HEADER}: {argument!r} is not an error type; known: {', '.join(sorted(ERROR_TYPES))}"
            )
        if kind == "refusal" and argument and argument not in REFUSAL_CATEGORIES:
            raise InvalidRequestError(
                f"{FAULT_HEADER}: {argument!r} is not a refusal category; "
                f"known: {', '.join(sorted(REFUSAL_CATEGORIES))}"
            )
        only_model = _option(options, "model")
        if only_model is not None and _model_of(body) != only_model:
            return None
        times = _times(options)
        if times is not None:
            key = hashlib.blake2b(header.encode() + b"\0" + body, digest_size=16).digest()
            seen = self._counts.get(key, 0)
            self._counts[key] = seen + 1
            self._counts.move_to_end(key)
            while len(self._counts) > _MAX_TRACKED:
                self._counts.popitem(last=False)
            if seen >= times:
                return None
        return Fault(kind, argument or None)


def _option(options: str, wanted: str) -> str | None:
    for option in options.split(";"):
        name, _, value = option.strip().partition("=")
        if name == wanted:
            return value
    return None


def _model_of(body: bytes) -> object:
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return fields.get("model") if isinstance(fields, dict) else None


def _times(options: str) -> int | None:
    for option in options.split(";"):
        name, _, value = option.strip().partition("=")
        if name == "times":
            try:
                return int(value)
            except ValueError:
                raise InvalidRequestError(f"{FAULT_HEADER}: times={value!r} is not a whole number") from None
    return None
