"""The one way a front door turns what a caller sent into the call the pipeline runs.

The gateway (Messages and OpenAI's Chat Completions), the in-process client (and the bots, which use it) and
the chat API all describe their calls here, so the same input meets the same rules at every door:

- the body: at most ``MAX_BODY_BYTES``; ``model`` a non-empty string, ``max_tokens`` a whole number of at
  least 0, ``stream`` a boolean (worded as Anthropic's API words them), and, for a body that will be stored,
  no NUL character (PostgreSQL stores none);
- the deadline (how long the call may wait for its turn): the caller's own (``deadline_s``, else the
  ``x-claudegate-deadline-ms`` header), else the key's default deadline, else ``default_deadline_s``; never
  more than a day;
- the priority (the caller's, else the key's), the stickiness key, the request id, and the model policy
  (its first model sent, the others kept as fallbacks).

A bad input raises ``InvalidRequestError`` (or ``RequestTooLargeError``) before the call is admitted: the
door records the refusal (``Pipeline.record_refusal``, with :func:`bare_call`) and answers it its own way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from claudegate.config import Settings
from claudegate.errors import InvalidRequestError, RequestTooLargeError
from claudegate.keys import Identity
from claudegate.pipeline.policies import PolicyBook, with_model
from claudegate.pipeline.request import CallRequest, new_request_id
from claudegate.pipeline.routing import DEADLINE_HEADER, deadline_for, sticky_key
from claudegate.pipeline.sink import RawHeaders
from claudegate.store.text import contains_nul
from claudegate.wire.paths import MODEL_ID, valid_id

__all__ = [
    "LONGEST_DEADLINE_S",
    "MAX_BODY_BYTES",
    "bare_call",
    "describe_call",
    "refuse_nul",
    "requested_deadline",
]

MAX_BODY_BYTES = 32 * 1024 * 1024  # Anthropic's limit for Messages and count_tokens
# A deadline further off than a day is no deadline: clamped, so that no wait computed from it overflows.
LONGEST_DEADLINE_S = 86_400.0
_LARGEST_INT = 2**63 - 1  # what the API takes as an integer; a larger number is "not a valid integer"
_TOO_LARGE = "Request exceeds the maximum allowed number of bytes."


def describe_call(
    fields: Mapping[str, Any],
    body: bytes,
    *,
    identity: Identity,
    settings: Settings,
    policies: PolicyBook | None,
    upstreams: int,
    headers: RawHeaders,
    asked: RawHeaders | None = None,
    request_id: str | None = None,
    deadline_s: float | None = None,
    priority: int | None = None,
    sticky: str | None = None,
    stored: bool = False,
    path_and_query: str = "/v1/messages",
    on_queued: Callable[[int, float], None] | None = None,
    loop_id: str | None = None,
    started: float | None = None,
    api: str = "anthropic",
) -> CallRequest:
    """The call for a Messages request: ``body`` the bytes sent upstream, ``fields`` that body parsed.

    ``headers``: those forwarded upstream. ``asked``: the caller's own, where the deadline header and the
    conversation header are read (default: ``headers``). ``deadline_s``/``priority``: the caller's, None for
    the key's. ``sticky``: the door's own stickiness key (a chat's); else the settings' ``sticky`` rule
    applies. ``upstreams``: how many the pool has (stickiness is worth computing only with several).
    ``stored``: the body will be stored, so it must hold no NUL.
    """
    if len(body) > MAX_BODY_BYTES:
        raise RequestTooLargeError(_TOO_LARGE)
    model = _model(fields)
    max_tokens = _max_tokens(fields)
    stream = _stream(fields)
    if stored:
        refuse_nul(fields)
    asked = headers if asked is None else asked
    wait_s = requested_deadline(deadline_s, asked)
    policy: str | None = None
    fallbacks: tuple[str, ...] = ()
    chain = policies.chain(model) if policies is not None else None
    if chain is not None:
        policy, model, fallbacks = model, chain[0], chain[1:]
        body = with_model(body, model)
    if upstreams <= 1:
        sticky = None  # one upstream: nothing to stick to
    elif sticky is None:
        sticky = sticky_key(settings.sticky, asked, fields)
    return CallRequest(
        identity=identity,
        request_id=request_id if request_id is not None else new_request_id(),
        body=body,
        model=model,
        max_tokens=max(max_tokens, 1),  # what the call is estimated to produce: at least a token
        deadline=deadline_for(identity, wait_s, settings.default_deadline_s),
        stream=stream,
        headers=headers,
        path_and_query=path_and_query,
        priority=identity.settings.priority if priority is None else priority,
        sticky_key=sticky,
        on_queued=on_queued,
        policy=policy,
        fallbacks=fallbacks,
        loop_id=loop_id,
        started=time.perf_counter() if started is None else started,
        api=api,
    )


def bare_call(
    identity: Identity,
    request_id: str,
    *,
    fields: Mapping[str, Any] | None = None,
    policies: PolicyBook | None = None,
    headers: RawHeaders | None = None,
    path_and_query: str = "/v1/messages",
    started: float | None = None,
    api: str = "anthropic",
) -> CallRequest:
    """The call as known before its body was checked: what the usage record of a refused call
    (``Pipeline.record_refusal``) says. ``fields``: the body as parsed, if it was; its ``model``, when it
    is a well-formed model id, is recorded (a policy's name as the policy, with its first model), so that a
    refusal shows up under the model it was for."""
    model = fields.get("model") if fields is not None else None
    if not isinstance(model, str) or not valid_id(MODEL_ID, model):
        model = None  # not a model id: nothing worth recording (and nothing that may not be stored)
    policy: str | None = None
    chain = policies.chain(model) if policies is not None else None
    if chain is not None:
        policy, model = model, chain[0]
    return CallRequest(
        identity=identity,
        request_id=request_id,
        body=b"",
        model=model,
        policy=policy,
        max_tokens=0,
        deadline=0.0,
        headers=headers if headers is not None else [],
        path_and_query=path_and_query,
        started=time.perf_counter() if started is None else started,
        api=api,
    )


def requested_deadline(deadline_s: float | None, asked: RawHeaders) -> float | None:
    """How long the caller said the call may wait (seconds, at most a day), or None when it said nothing:
    ``deadline_s``, else the ``x-claudegate-deadline-ms`` header."""
    if deadline_s is not None:
        if isinstance(deadline_s, bool) or not isinstance(deadline_s, int | float) or not deadline_s > 0:
            raise InvalidRequestError(
                f"deadline_s: expected a positive number of seconds, got {deadline_s!r}"
            )
        return min(float(deadline_s), LONGEST_DEADLINE_S)  # inf and huge numbers included
    for name, value in asked:
        if name == DEADLINE_HEADER:
            try:
                deadline_ms = int(value)
            except ValueError:
                deadline_ms = 0
            if deadline_ms <= 0:
                raise InvalidRequestError(
                    f"{DEADLINE_HEADER.decode()}: expected a positive whole number of milliseconds"
                )
            return min(deadline_ms / 1000, LONGEST_DEADLINE_S)
    return None


def refuse_nul(body: object) -> None:
    """Refuse a JSON body whose text holds a NUL character: it would be stored, and PostgreSQL stores no
    NUL (changing what the client sent instead would store something it did not say)."""
    if contains_nul(body):
        raise InvalidRequestError(
            "The request body contains a NUL character (\\u0000), which cannot be stored; remove it"
        )


def _model(fields: Mapping[str, Any]) -> str:
    model = fields.get("model")
    if "model" not in fields:
        raise InvalidRequestError("model: Field required")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model: Input should be a valid string")
    return model


def _max_tokens(fields: Mapping[str, Any]) -> int:
    max_tokens = fields.get("max_tokens")
    if "max_tokens" not in fields:
        raise InvalidRequestError("max_tokens: Field required")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens > _LARGEST_INT:
        raise InvalidRequestError("max_tokens: Input should be a valid integer")
    if max_tokens < 0:
        raise InvalidRequestError("max_tokens: Input should be greater than or equal to 0")
    return max_tokens


def _stream(fields: Mapping[str, Any]) -> bool:
    stream = fields.get("stream")
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise InvalidRequestError("stream: Input should be a valid boolean")
    return stream
