"""OpenAI's Chat Completions API, translated to and from Anthropic's Messages API.

Pure functions and small state machines, apart from I/O: the gateway's ``/v1/chat/completions`` route
(``claudegate.server.openai_routes``) translates a request with ``translate_request``, runs it through the
same pipeline as ``/v1/messages``, and translates the reply as it passes (``completion_from_message``,
``ChunkTranslator``, ``translate_error_body``).
"""

from __future__ import annotations

from claudegate.openai.errors import (
    OpenAIError,
    UnsupportedParameterError,
    error_envelope,
    translate_error,
    translate_error_body,
)
from claudegate.openai.models import model_list, model_object
from claudegate.openai.request import DEFAULT_MAX_TOKENS, TranslatedRequest, translate_request
from claudegate.openai.response import completion_from_message, finish_reason, openai_usage
from claudegate.openai.stream import DONE, ChunkTranslator

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DONE",
    "ChunkTranslator",
    "OpenAIError",
    "TranslatedRequest",
    "UnsupportedParameterError",
    "completion_from_message",
    "error_envelope",
    "finish_reason",
    "model_list",
    "model_object",
    "openai_usage",
    "translate_error",
    "translate_error_body",
    "translate_request",
]
