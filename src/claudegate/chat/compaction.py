"""Compaction of a chat's older turns into a summary, kept with the conversation.

Once a chat's history (with the new message and the reply's room) passes ``compaction_share`` of the model's
context window, or the ``chat_history_tokens`` budget if that is smaller, the older turns (with any earlier
summary) are summarised by ``compaction_model`` in a call of their own through the pipeline (billed to the
caller, with its own usage record), and the summary is stored on the conversation with the id of the last
message it covers. Every later call sends the summary at the end of the system prompt and only the turns
after it; the summary is redone when those grow past the threshold again.

If the summary call fails, the turn goes ahead without it: older turns are then simply left out, as the
history budget always did.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from claudegate.chat.history import HistoryMessage, history_start
from claudegate.config import Settings
from claudegate.errors import ClaudegateError
from claudegate.keys import Identity
from claudegate.pipeline.core import Pipeline
from claudegate.pipeline.describe import describe_call
from claudegate.pipeline.policies import PolicyBook
from claudegate.pipeline.sink import Departure, RawHeaders
from claudegate.store import Store
from claudegate.wire.models import default_catalog

__all__ = ["Compaction", "Compactor", "summary_block"]

logger = logging.getLogger(__name__)

_SUMMARY_PROMPT = (
    "Summarise the conversation below for whoever continues it: keep every fact, name, number, decision and "
    "open question; drop pleasantries. Write the summary only."
)
_SUMMARY_MAX_TOKENS = 1024
_KEEP_SHARE = 0.5  # after compaction, the turns still sent take at most this share of the threshold
_HEADERS: RawHeaders = [(b"content-type", b"application/json"), (b"anthropic-version", b"2023-06-01")]


@dataclass(frozen=True, slots=True)
class Compaction:
    summary: str | None  # to send at the end of the system prompt
    start: int  # the index of the first earlier message to send


def summary_block(summary: str) -> dict[str, Any]:
    return {"type": "text", "text": f"Summary of the conversation so far:\n{summary}"}


class _Collected(Departure):
    """Keeps a reply whole (the summary call has no client to stream to)."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 0
        self.chunks: list[bytes] = []

    async def start(self, status: int, headers: RawHeaders) -> None:
        self.status = status

    async def send(self, chunk: bytes, *, more: bool) -> None:
        if chunk:
            self.chunks.append(chunk)


class Compactor:
    __slots__ = ("_pipeline", "_policies", "_settings", "_store")

    def __init__(self, *, store: Store, pipeline: Pipeline, settings: Settings, policies: PolicyBook) -> None:
        self._store = store
        self._pipeline = pipeline
        self._settings = settings
        self._policies = policies

    def threshold(self, model: str) -> int:
        settings = self._settings
        window = self._policies.context_window(model, default_catalog())
        if window is None:
            return settings.chat_history_tokens
        return min(settings.chat_history_tokens, int(window * settings.compaction_share))

    async def compact(
        self,
        identity: Identity,
        chat_id: str,
        model: str,
        earlier: Sequence[HistoryMessage],
        ids: Sequence[str],
        *,
        new_tokens: int,
        max_tokens: int,
    ) -> Compaction:
        """The summary to send and where the history sent starts, compacting first if need be."""
        stored = await self._store.chats.summary(chat_id)
        summary, covered = None, 0
        if stored is not None and stored[1] in ids:
            summary, covered = stored[0], ids.index(stored[1]) + 1
        threshold = self.threshold(model)
        room = new_tokens + max_tokens
        if sum(message.tokens for message in earlier[covered:]) + room <= threshold:
            return Compaction(summary, covered)
        keep_budget = max(0, int(threshold * _KEEP_SHARE) - max_tokens)
        start = covered + history_start(earlier[covered:], keep_budget, new_tokens=new_tokens)
        if start == covered:
            return Compaction(summary, covered)
        try:
            new_summary = await self._summarise(identity, summary, earlier[covered:start])
        except ClaudegateError as error:
            logger.warning("chat %s: compaction failed (%s); older turns are left out", chat_id, error)
            return Compaction(summary, start)
        await self._store.chats.set_summary(chat_id, new_summary, ids[start - 1])
        return Compaction(new_summary, start)

    async def _summarise(
        self, identity: Identity, summary: str | None, messages: Sequence[HistoryMessage]
    ) -> str:
        transcript = "\n".join(f"{message.role}: {_plain(message.content)}" for message in messages)
        if summary is not None:
            transcript = f"Earlier summary:\n{summary}\n\n{transcript}"
        model = self._settings.compaction_model
        body = {
            "model": model,
            "max_tokens": _SUMMARY_MAX_TOKENS,
            "system": _SUMMARY_PROMPT,
            "messages": [{"role": "user", "content": transcript}],
        }
        call = describe_call(
            body,
            orjson.dumps(body),
            identity=identity,
            settings=self._settings,
            policies=self._policies,
            upstreams=1,  # a summary is asked once: no cache to keep warm on one upstream
            headers=list(_HEADERS),
        )
        sink = _Collected()
        await self._pipeline.run(call, sink)
        reply = orjson.loads(b"".join(sink.chunks) or b"{}")
        if sink.status != 200:
            message = reply.get("error", {}).get("message", "no reply") if isinstance(reply, dict) else ""
            raise ClaudegateError(f"the summary call answered {sink.status}: {message}")
        return "".join(
            block.get("text", "") for block in reply.get("content", []) if block.get("type") == "text"
        ).strip()


def _plain(content: Sequence[Any]) -> str:
    return " ".join(
        str(block.get("text", ""))
        for block in content
        if isinstance(block, dict) and block.get("type") == "text"
    )
