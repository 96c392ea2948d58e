"""The SDK's keyword parameters turned into what the pipeline forwards: body bytes, headers and path.

It follows what the official SDK sends for the same call: parameters left out (or given as the SDK's
``omit``/``NOT_GIVEN``) are not sent; ``user_profile_id`` and ``workspace_id`` travel as headers; keyword
arguments the SDK does not know and ``extra_body`` are merged into the body (``extra_body`` wins);
``betas`` becomes the ``anthropic-beta`` header and ``?beta=true``, as the SDK's beta namespace sends;
``extra_headers`` come last and win (a header given as ``omit`` is dropped); ``extra_query`` joins the path.
SDK models given as parameters (a reply's content blocks sent back as the next turn's) are sent as the SDK
sends them: their fields as set, in JSON mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import anthropic
import orjson
import pydantic

from claudegate.pipeline.sink import RawHeaders

__all__ = ["API_VERSION", "Defaults", "Prepared", "is_given", "jsonable", "prepare"]

API_VERSION = "2023-06-01"

# Parameters the SDK sends as headers rather than in the body.
_HEADER_PARAMS = {"user_profile_id": "anthropic-user-profile-id", "workspace_id": "anthropic-workspace-id"}


@dataclass(frozen=True, slots=True)
class Defaults:
    """What ``client.with_options(...)`` sets for every call of the client it returns (a call's own
    arguments win; its ``extra_headers`` are added to these)."""

    timeout: float | None = None
    deadline_s: float | None = None
    priority: int | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    body: bytes
    fields: dict[str, Any]  # the body parsed back, for what the pipeline reads (model, max_tokens, prefix)
    headers: RawHeaders
    path_and_query: str


def is_given(value: object) -> bool:
    return not isinstance(value, anthropic.Omit | anthropic.NotGiven)


def prepare(
    path: str,
    params: Mapping[str, object],
    *,
    betas: Iterable[str] | None = None,
    extra_headers: Mapping[str, object] | None = None,
    extra_query: Mapping[str, object] | None = None,
    extra_body: Mapping[str, object] | None = None,
) -> Prepared:
    fields: dict[str, Any] = {}
    headers: dict[str, str] = {"anthropic-version": API_VERSION, "content-type": "application/json"}
    for name, value in params.items():
        if not is_given(value):
            continue
        if name in _HEADER_PARAMS:
            headers[_HEADER_PARAMS[name]] = str(value)
        else:
            fields[name] = value
    if extra_body:
        fields.update(extra_body)
    query: dict[str, object] = {}
    beta_names = [beta for beta in betas or () if is_given(beta)]
    if beta_names:
        headers["anthropic-beta"] = ",".join(beta_names)
        query["beta"] = "true"
    for name, value in (extra_headers or {}).items():
        if is_given(value):
            headers[name.lower()] = str(value)
        else:
            headers.pop(name.lower(), None)
    for name, value in headers.items():
        # Refused here, before the call enters the pipeline, rather than by the upstream client's own check
        # once the call has been admitted and counted.
        if any(forbidden in name or forbidden in value for forbidden in "\r\n\0"):
            raise ValueError(f"the header {name!r} holds a CR, LF or NUL character: a header cannot")
    if extra_query:
        query.update(extra_query)
    body = orjson.dumps(fields, default=jsonable)
    return Prepared(
        body=body,
        fields=orjson.loads(body),  # as sent: generators and SDK models given as parameters, converted
        headers=[(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()],
        path_and_query=path + ("?" + urlencode(query) if query else ""),
    )


def jsonable(value: object) -> object:
    """What orjson cannot serialise itself: SDK models, other mappings, other iterables."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(
            mode="json", exclude_unset=True, exclude=getattr(value, "__api_exclude__", None)
        )
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
