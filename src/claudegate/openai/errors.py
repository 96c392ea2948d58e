"""OpenAI's error envelope for the errors of a translated call.

OpenAI's SDKs pick their exception class from the status alone (400 ``BadRequestError``, 401
``AuthenticationError``, 403 ``PermissionDeniedError``, 404 ``NotFoundError``, 429 ``RateLimitError``, 5xx
``InternalServerError``), and frameworks built on them read ``error.code`` (``context_length_exceeded``,
``insufficient_quota``, ``rate_limit_exceeded``). Each Anthropic error type maps to the status and code an
application written against OpenAI already handles:

    Anthropic (status)              OpenAI status  type                   code
    invalid_request_error (400)     400            invalid_request_error  None (context_length_exceeded
                                                                          for a prompt that is too long)
    authentication_error (401)      401            invalid_request_error  invalid_api_key
    billing_error (402)             429            insufficient_quota     insufficient_quota
    permission_error (403)          403            invalid_request_error  permission_denied
    not_found_error (404)           404            invalid_request_error  model_not_found / not_found
    request_too_large (413)         413            invalid_request_error  request_too_large
    rate_limit_error (429)          429            requests               rate_limit_exceeded
    api_error (500)                 500            server_error           None
    timeout_error (504)             504            server_error           timeout
    overloaded_error (529)          503            server_error           overloaded

A spent budget (402 in Anthropic's API) becomes what OpenAI answers when an account's quota is spent: 429
``insufficient_quota``, with ``x-should-retry: false`` so the SDKs do not retry a call that cannot succeed
until the budget starts over. 529 becomes 503, the status OpenAI uses when it is overloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from claudegate.errors import InvalidRequestError

__all__ = [
    "OpenAIError",
    "UnsupportedParameterError",
    "error_envelope",
    "translate_error",
    "translate_error_body",
]

# Anthropic error type → (OpenAI status, type, code).
_MAPPING: Final[dict[str, tuple[int, str, str | None]]] = {
    "invalid_request_error": (400, "invalid_request_error", None),
    "authentication_error": (401, "invalid_request_error", "invalid_api_key"),
    "billing_error": (429, "insufficient_quota", "insufficient_quota"),
    "permission_error": (403, "invalid_request_error", "permission_denied"),
    "not_found_error": (404, "invalid_request_error", "not_found"),
    "request_too_large": (413, "invalid_request_error", "request_too_large"),
    "rate_limit_error": (429, "requests", "rate_limit_exceeded"),
    "api_error": (500, "server_error", None),
    "timeout_error": (504, "server_error", "timeout"),
    "overloaded_error": (503, "server_error", "overloaded"),
}
_BY_STATUS: Final[dict[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class UnsupportedParameterError(InvalidRequestError):
    """A request field that cannot be translated to Claude: a 400 that names it, never a silent drop."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class OpenAIError:
    """An error as an OpenAI client receives it."""

    status: int
    body: bytes
    no_retry: bool  # tell the SDKs not to retry (``x-should-retry: false``)


def error_envelope(message: str, error_type: str, param: str | None = None, code: str | None = None) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return orjson.dumps({"error": {"message": message, "type": error_type, "param": param, "code": code}})


def translate_error(
    status: int,
    anthropic_type: str | None,
    message: str,
    *,
    param: str | None = None,
    model_route: bool = True,
) -> OpenAIError:
    """The OpenAI error for an Anthropic error (its status, ``error.type`` and message).

    ``model_route``: a 404 of a call that names a model is about the model (``model_not_found``).
    """
    if anthropic_type not in _MAPPING:
        anthropic_type = _BY_STATUS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    mapped_status, error_type, code = _MAPPING[anthropic_type]
    if anthropic_type == "invalid_request_error":
        mapped_status = status if 400 <= status < 500 and status != 402 else 400
        if status == 405:
            code = "method_not_allowed"
        elif "prompt is too long" in message:
            code = "context_length_exceeded"
    elif anthropic_type == "api_error" and status >= 500 and status != 529:
        mapped_status = status
    elif anthropic_type == "not_found_error" and model_route:
        code = "model_not_found"
    if param is not None and code is None:
        code = "unsupported_parameter"
    return OpenAIError(
        status=mapped_status,
        body=error_envelope(message, error_type, param, code),
        no_retry=anthropic_type == "billing_error",
    )


def translate_error_body(status: int, body: bytes, *, model_route: bool = True) -> OpenAIError:
    """The OpenAI error for an Anthropic error reply (``{"type": "error", "error": {"type", "message"}}``)."""
    error_type: str | None = None
    message = f"The upstream answered with status {status}"
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        error = parsed["error"]
        if isinstance(error.get("type"), str):
            error_type = error["type"]
        if isinstance(error.get("message"), str):
            message = error["message"]
    return translate_error(status, error_type, message, model_route=model_route)
