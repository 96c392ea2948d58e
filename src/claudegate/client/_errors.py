"""The official SDK's exceptions, raised for what went wrong in process, so code that catches
``anthropic.RateLimitError`` around ``anthropic.AsyncAnthropic`` catches it around ``claudegate.AsyncClient``.

Status errors get the class the SDK gives their status, built only from the SDK's public classes, with an
HTTP response object like the SDK's (``status_code``, ``body``, ``response``, ``request_id``):

- an error reply the upstream gave, relayed by the pipeline: its status, headers and body;
- an error claudegate made itself (a ClaudegateError: a bad key, a refusal at admission, an unreachable
  upstream): Anthropic's envelope, as the gateway would have answered, marked ``x-claudegate-origin:
  gateway``, with ``retry-after`` on a 429;
- an ``error`` event in a stream: a plain APIStatusError on the stream's 200 response, as the SDK raises.

The mapping by status follows SDK 2.12 (``_error_classes.ERROR_CLASSES``) without its finer classes keyed
by ``error.details.error_code``, which neither Anthropic's Messages API nor claudegate send. Classes an
older SDK lacks fall back as that SDK would (a plain APIStatusError, or InternalServerError from 500 on).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable
from typing import Any

import anthropic
import orjson

from claudegate.client._exchange import ReplyLost
from claudegate.errors import ClaudegateError, RateLimitError, retry_after_headers
from claudegate.pipeline.relay import UpstreamDropped
from claudegate.pipeline.sink import RawHeaders

__all__ = [
    "connection_error",
    "error_from_claudegate",
    "error_from_event",
    "error_from_reply",
    "http_response",
    "text_headers",
    "timeout_error",
    "translate",
]

# The SDK's class name for each status, newest name first where it was renamed.
_CLASS_NAMES: dict[int, tuple[str, ...]] = {
    400: ("BadRequestError",),
    401: ("AuthenticationError",),
    402: ("PaymentRequiredError",),
    403: ("PermissionDeniedError",),
    404: ("NotFoundError",),
    408: ("RequestTimeoutError",),
    409: ("ConflictError",),
    412: ("PreconditionFailedError",),
    413: ("ContentTooLargeError", "RequestTooLargeError"),
    422: ("UnprocessableEntityError",),
    429: ("RateLimitError",),
    431: ("RequestHeaderFieldsTooLargeError",),
    499: ("ClientClosedRequestError",),
    501: ("HTTPNotImplementedError",),
    503: ("ServiceUnavailableError",),
    504: ("GatewayTimeoutError",),
    529: ("OverloadedError",),
}

GATEWAY_ORIGIN = ("x-claudegate-origin", "gateway")
_BASE_URL = "claudegate://in-process"


@functools.cache
def _http() -> Any:
    """The HTTP library the installed SDK is built on: httpx2 from SDK 2, httpx before."""
    try:
        return importlib.import_module("httpx2")
    except ModuleNotFoundError:
        return importlib.import_module("httpx")


def _status_class(status: int) -> type[anthropic.APIStatusError]:
    for name in _CLASS_NAMES.get(status, ()):
        cls = getattr(anthropic, name, None)
        if isinstance(cls, type) and issubclass(cls, anthropic.APIStatusError):
            return cls
    return anthropic.InternalServerError if status >= 500 else anthropic.APIStatusError


def http_response(
    status: int, headers: Iterable[tuple[str, str]], body: bytes = b"", *, path: str = "/v1/messages"
) -> Any:
    """An HTTP response object of the SDK's library (``httpx2.Response``) standing for an in-process reply;
    its request is ``POST claudegate://in-process`` + ``path``."""
    http = _http()
    request = http.Request("POST", _BASE_URL + path)
    return http.Response(status, headers=list(headers), content=body, request=request)


def text_headers(raw: RawHeaders) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]


def _status_error(status: int, body: bytes, headers: Iterable[tuple[str, str]], path: str) -> Exception:
    # The message is the SDK's: "Error code: 429 - {...}" with the parsed body, else the text.
    text = body.decode(errors="replace").strip()
    parsed: object = text
    try:
        parsed = orjson.loads(body)
        message = f"Error code: {status} - {parsed}"
    except orjson.JSONDecodeError:
        message = text or f"Error code: {status}"
    response = http_response(status, headers, body, path=path)
    return _status_class(status)(message, response=response, body=parsed)


def error_from_reply(status: int, headers: RawHeaders, body: bytes, *, path: str) -> Exception:
    """The exception for an error reply (status 400 and above) the pipeline relayed."""
    return _status_error(status, body, text_headers(headers), path)


def error_from_claudegate(error: ClaudegateError, request_id: str, *, path: str) -> Exception:
    """The exception for an error claudegate made itself, with the headers the gateway would send."""
    headers = [
        ("content-type", "application/json"),
        GATEWAY_ORIGIN,
        ("request-id", request_id),
        ("x-claudegate-request-id", request_id),
    ]
    if isinstance(error, RateLimitError):
        headers.extend(retry_after_headers(error.retry_after))
        headers.extend(error.headers)
    return _status_error(error.status, error.body(request_id), headers, path)


def error_from_event(data: bytes, headers: RawHeaders, *, path: str) -> Exception:
    """The exception for an ``error`` event in a stream: APIStatusError on the stream's 200 response, its
    body the event's data, as the SDK raises it."""
    try:
        body: object = orjson.loads(data)
        message = f"{body}"
    except orjson.JSONDecodeError:
        body = data.decode(errors="replace")
        message = str(body) or "Error code: 200"
    response = http_response(200, text_headers(headers), path=path)
    return _status_class(200)(message, response=response, body=body)


def connection_error(message: str, *, path: str) -> anthropic.APIConnectionError:
    """The upstream cut the reply short, or the client closed under the call."""
    return anthropic.APIConnectionError(message=message, request=_http().Request("POST", _BASE_URL + path))


def timeout_error(*, path: str) -> anthropic.APITimeoutError:
    return anthropic.APITimeoutError(request=_http().Request("POST", _BASE_URL + path))


def translate(error: BaseException, *, request_id: str, path: str) -> BaseException:
    """The SDK's exception for what a call raised in process; anything else unchanged."""
    if isinstance(error, ClaudegateError):
        return error_from_claudegate(error, request_id, path=path)
    if isinstance(error, UpstreamDropped):
        return connection_error("The upstream closed the connection before its reply was complete", path=path)
    if isinstance(error, ReplyLost):
        return connection_error(str(error), path=path)
    if isinstance(error, TimeoutError):
        return timeout_error(path=path)
    return error
