"""The call object every front door builds and the pipeline runs."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from claudegate.keys import Identity
from claudegate.pipeline.sink import RawHeaders

__all__ = ["CallRequest", "new_request_id"]


def new_request_id() -> str:
    # Unique, not secret: 96 bits from the random module's generator (seeded from the OS, and reseeded in a
    # forked worker) rather than secrets, which asks the kernel for them (a syscall) on every call.
    return f"req_cg_{random.getrandbits(96):024x}"


@dataclass(frozen=True, slots=True)
class CallRequest:
    """What a call is, as every front door describes it (``pipeline.describe.describe_call``). Frozen: a step
    that changes what is sent (a policy's fallback model) makes a new one with ``dataclasses.replace``."""

    identity: Identity
    request_id: str
    body: bytes  # the request body exactly as the client sent it: it is forwarded unchanged
    model: str | None
    max_tokens: int
    deadline: float  # on time.monotonic(): by when the reply must have begun
    stream: bool = False  # the body asks for a stream
    headers: RawHeaders = field(default_factory=list)  # the client's headers, forwarded end to end
    path_and_query: str = "/v1/messages"
    priority: int = 0
    sticky_key: str | None = None
    on_queued: Callable[[int, float], None] | None = None  # (position, predicted wait) when it must wait
    policy: str | None = None  # the model policy the caller named (pipeline/policies.py), if any
    fallbacks: tuple[str, ...] = ()  # the policy's models to try, in order, when ``model`` is overloaded
    loop_id: str | None = None  # shared by the calls of one tool loop
    started: float = field(default_factory=time.perf_counter)
    api: str = "anthropic"  # the API the client spoke: "anthropic", or "openai" (translated)
