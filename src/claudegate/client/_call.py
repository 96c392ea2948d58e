"""The call object for a request made in process, described as the gateway describes an HTTP call
(``Gateway._describe``): model and max_tokens from the body, deadline (``pipeline.routing.deadline_for``),
priority and stickiness key."""

from __future__ import annotations

import logging
from collections.abc import Callable

from claudegate.client._params import Prepared
from claudegate.config import Settings
from claudegate.keys import Identity
from claudegate.pipeline.policies import PolicyBook, apply_policy
from claudegate.pipeline.request import CallRequest
from claudegate.pipeline.routing import deadline_for, sticky_key

__all__ = ["build_call"]

logger = logging.getLogger(__name__)


def build_call(
    prepared: Prepared,
    *,
    identity: Identity,
    request_id: str,
    settings: Settings,
    upstreams: int,
    deadline_s: float | None,
    priority: int | None,
    on_queued: Callable[[int, float], None] | None,
    policies: PolicyBook | None = None,
    loop_id: str | None = None,
) -> CallRequest:
    """``deadline_s``: how long the call may wait to start; None takes the key's default deadline, else
    ``settings.default_deadline_s``. ``priority``: None takes the key's. ``upstreams``: how many the pool has
    (a stickiness key is worth computing only with several)."""
    if deadline_s is not None and not deadline_s > 0:
        raise ValueError(f"deadline_s must be a positive number of seconds, got {deadline_s!r}")
    fields = prepared.fields
    model = fields.get("model")
    max_tokens = fields.get("max_tokens")
    call = CallRequest(
        identity=identity,
        request_id=request_id,
        body=prepared.body,
        model=model if isinstance(model, str) else None,
        max_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 1,
        stream=fields.get("stream") is True,
        deadline=deadline_for(identity, deadline_s, settings.default_deadline_s),
        headers=prepared.headers,
        path_and_query=prepared.path_and_query,
        priority=identity.settings.priority if priority is None else priority,
        sticky_key=sticky_key(settings.sticky, prepared.headers, fields) if upstreams > 1 else None,
        on_queued=on_queued,
        loop_id=loop_id,
    )
    if policies is not None:
        apply_policy(call, policies)
    return call
