"""One exception tree for errors claudegate answers itself, and Anthropic's error envelope.

    ClaudegateError                 status  error.type
    ├─ InvalidRequestError          400     invalid_request_error
    ├─ AuthenticationError          401     authentication_error
    ├─ BillingError                 402     billing_error
    ├─ PermissionDeniedError        403     permission_error
    ├─ NotFoundError                404     not_found_error
    ├─ MethodNotAllowedError        405     invalid_request_error
    ├─ RequestTooLargeError         413     request_too_large
    ├─ RateLimitError               429     rate_limit_error      (carries retry_after seconds)
    ├─ ApiError                     500     api_error
    ├─ GatewayTimeoutError          504     timeout_error
    └─ OverloadedError              529     overloaded_error

Every front door turns these into the same envelope Anthropic uses, so a client's SDK raises the same
exception class for an error made by claudegate as for one made by Anthropic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import orjson

__all__ = [
    "ERROR_TYPES",
    "SHUTTING_DOWN",
    "ApiError",
    "AuthenticationError",
    "BillingError",
    "ClaudegateError",
    "GatewayTimeoutError",
    "InvalidRequestError",
    "MethodNotAllowedError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "error_body",
    "error_for_status",
    "error_for_type",
    "retry_after_headers",
]


class ClaudegateError(Exception):
    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "api_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self, request_id: str | None = None) -> bytes:
        return error_body(self.error_type, self.message, request_id)


class InvalidRequestError(ClaudegateError):
    status = 400
    error_type = "invalid_request_error"


class AuthenticationError(ClaudegateError):
    status = 401
    error_type = "authentication_error"


class BillingError(ClaudegateError):
    status = 402
    error_type = "billing_error"


class PermissionDeniedError(ClaudegateError):
    status = 403
    error_type = "permission_error"


class NotFoundError(ClaudegateError):
    status = 404
    error_type = "not_found_error"


class MethodNotAllowedError(InvalidRequestError):
    """A known path asked with a method it does not serve."""

    status = 405

    def __init__(self, method: str, path: str, allowed: Sequence[str] = ()) -> None:
        hint = f"; use {', '.join(allowed)}" if allowed else ""
        super().__init__(f"Method {method} is not allowed on {path}{hint}")


class RequestTooLargeError(ClaudegateError):
    status = 413
    error_type = "request_too_large"


class RateLimitError(ClaudegateError):
    status = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = tuple(headers)  # rate-limit state to send along with the 429


class ApiError(ClaudegateError):
    status = 500
    error_type = "api_error"


class GatewayTimeoutError(ClaudegateError):
    status = 504
    error_type = "timeout_error"


class OverloadedError(ClaudegateError):
    status = 529
    error_type = "overloaded_error"


SHUTTING_DOWN = "claudegate: the gateway is shutting down; retry the call"  # calls stopped at shutdown


# The errors of Anthropic's API that need nothing but a message (a rate limit needs a retry time too).
_PLAIN_ERRORS: tuple[type[ClaudegateError], ...] = (
    InvalidRequestError,
    AuthenticationError,
    BillingError,
    PermissionDeniedError,
    NotFoundError,
    RequestTooLargeError,
    ApiError,
    GatewayTimeoutError,
    OverloadedError,
)
_BY_STATUS: dict[int, type[ClaudegateError]] = {cls.status: cls for cls in _PLAIN_ERRORS}
_BY_TYPE: dict[str, type[ClaudegateError]] = {cls.error_type: cls for cls in _PLAIN_ERRORS}
# Every error type of Anthropic's envelope.
ERROR_TYPES = frozenset({*_BY_TYPE, RateLimitError.error_type})


def error_for_status(status: int, message: str) -> ClaudegateError:
    """The error class Anthropic uses for an HTTP status (rate limits excepted: they need a retry time)."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ApiError if status >= 500 else InvalidRequestError
    return cls(message)


def error_for_type(error_type: str, message: str) -> ClaudegateError:
    """The error of an envelope's type, as Anthropic names it (an unknown type: ``api_error``); a rate limit
    says to retry after a second, since an envelope carries no retry time."""
    if error_type == RateLimitError.error_type:
        return RateLimitError(message, retry_after=1.0)
    return _BY_TYPE.get(error_type, ApiError)(message)


def retry_after_headers(seconds: float) -> list[tuple[str, str]]:
    """``retry-after`` in whole seconds (rounded up: never earlier than predicted) and ``retry-after-ms``
    with the exact wait, which the official SDKs read first."""
    return [
        ("retry-after", str(max(1, math.ceil(seconds)))),
        ("retry-after-ms", str(max(1, round(seconds * 1000)))),
    ]


def error_body(error_type: str, message: str, request_id: str | None = None) -> bytes:
    """Anthropic's error envelope: ``{"type":"error","error":{"type":…,"message":…},"request_id":…}``."""
    return orjson.dumps(
        {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}
    )
