"""The :class:`~claudegate.bots.answerer.Answerer` that asks Claude through claudegate's in-process client,
so every question runs the gateway's pipeline (flow control with the call's deadline, retries, failover,
usage records) without an HTTP hop.

The SDK's exceptions are sorted into what a viewer is told:

    anthropic.RateLimitError (429: refused at admission, or the upstream's after retries)  busy, retry-after
    OverloadedError (529), ServiceUnavailableError (503)                                    busy
    APITimeoutError, 504 and 408 replies                                                    slow
    other status errors, APIConnectionError                                                 trouble
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anthropic

from claudegate.bots.answerer import AnswerFailed, QueuedCallback
from claudegate.bots.answers import cut, max_tokens_for, tidy
from claudegate.client import AsyncClient

__all__ = ["ClaudeAnswerer", "failure_of", "retry_after_of"]

logger = logging.getLogger(__name__)

_BUSY = frozenset({429, 503, 529})
_SLOW = frozenset({408, 504})


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds), when either is a number."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue
    return None


def failure_of(error: anthropic.APIError) -> AnswerFailed:
    """The kind of failure an SDK exception means for a viewer."""
    if isinstance(error, anthropic.APITimeoutError):
        return AnswerFailed("slow", str(error))
    if isinstance(error, anthropic.APIStatusError):
        status = error.status_code
        if status in _BUSY:
            return AnswerFailed("busy", str(error), retry_after=retry_after_of(error.response.headers))
        if status in _SLOW:
            return AnswerFailed("slow", str(error))
        if status < 500:
            logger.error("Claude refused the bot's call (%d): %s; check the bot's settings", status, error)
    return AnswerFailed("trouble", str(error))


class ClaudeAnswerer:
    def __init__(
        self, client: AsyncClient, *, model: str, system_prompt: str, chars_per_token: float
    ) -> None:
        self._client = client
        self._model = model
        self._system_prompt = system_prompt
        self._chars_per_token = chars_per_token

    async def answer(
        self, question: str, *, max_chars: int, deadline_s: float, on_queued: QueuedCallback | None = None
    ) -> str:
        system = self._system_prompt.replace("{max_chars}", str(max_chars))
        try:
            message = await self._client.messages.create(
                model=self._model,
                max_tokens=max_tokens_for(max_chars, self._chars_per_token),
                system=system,
                messages=[{"role": "user", "content": question}],
                deadline_s=deadline_s,
                on_queued=on_queued,
            )
        except anthropic.APIError as error:
            raise failure_of(error) from error
        text = tidy("".join(block.text for block in message.content if block.type == "text"))
        if message.stop_reason == "max_tokens" and text:
            # Stopped mid-sentence by the token cap: end it after its last sentence, or a word and "…".
            text = cut(text, len(text) - 1)
        return text
