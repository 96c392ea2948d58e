"""Long conversations in the in-process client: replies stopped by ``max_tokens`` continued to their end, and
a history kept inside the model's context window by compaction.

- **Continuation** (:func:`create_continued`, ``client.messages.create_continued``): a reply that stops at
  ``max_tokens`` is sent back as the start of the assistant's turn (a prefill) and the model goes on from
  there, up to ``max_continuations`` times; the pieces come back as one ``Message`` whose text is the whole
  answer, whose ``stop_reason`` is the last piece's, and whose usage is the sum of all the calls'.
- **Compaction** (:class:`AsyncConversation`, ``client.conversation(...)``): before each turn the history is
  counted (``count_tokens``); once it passes ``compaction_share`` (default 75%) of the model's context window,
  the older turns, with any earlier summary, are summarised by a cheaper model (``compaction_model``) and
  replaced by that summary, which then rides in the system prompt. ``conversation.summary`` holds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from anthropic.types import Message, TextBlock, Usage

from claudegate.pipeline.policies import PolicyBook
from claudegate.wire.models import default_catalog

if TYPE_CHECKING:
    from claudegate.client._client import AsyncClient

__all__ = ["AsyncConversation", "create_continued"]

Create = Callable[..., Awaitable[Message]]

_SUMMARY_PROMPT = (
    "Summarise the conversation below for whoever continues it: keep every fact, name, number, decision and "
    "open question; drop pleasantries. Write the summary only."
)
_SUMMARY_MAX_TOKENS = 1024
_KEEP_SHARE = 0.5  # after compaction, the recent turns kept take at most this share of the threshold


async def create_continued(create: Create, params: dict[str, Any], *, max_continuations: int) -> Message:
    """``create(**params)``, continued while it stops at ``max_tokens`` (see the module's docstring)."""
    message = await create(**params)
    pieces = [message]
    text = _text(message)
    while message.stop_reason == "max_tokens" and len(pieces) <= max_continuations:
        prefill = text.rstrip()  # the API refuses a final assistant turn ending in whitespace
        if not prefill:
            break  # nothing to go on from (the cut fell in thinking or a tool call)
        messages = [*params["messages"], {"role": "assistant", "content": prefill}]
        message = await create(**{**params, "messages": messages})
        pieces.append(message)
        text = prefill + _text(message)
    if len(pieces) == 1:
        return message
    first, last = pieces[0], pieces[-1]
    others = [block for block in first.content if block.type != "text"]
    return first.model_copy(
        update={
            "content": [*others, TextBlock(type="text", text=text)],
            "stop_reason": last.stop_reason,
            "stop_sequence": last.stop_sequence,
            "usage": _summed(piece.usage for piece in pieces),
        }
    )


class AsyncConversation:
    """A conversation that keeps its own history: ``reply = await conversation.send("…")``."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        model: str,
        max_tokens: int,
        system: str | None = None,
        max_continuations: int | None = None,
        compaction_share: float | None = None,
        compaction_model: str | None = None,
        context_window: int | None = None,
        **params: Any,
    ) -> None:
        settings = client.settings
        self.model = model
        self.max_tokens = max_tokens
        self.system = system
        self.max_continuations = settings.continuation_max if max_continuations is None else max_continuations
        self.compaction_share = compaction_share or settings.compaction_share
        self.compaction_model = compaction_model or settings.compaction_model
        self.context_window = context_window or _context_window(client, model)
        self.messages: list[dict[str, Any]] = []
        self.summary: str | None = None
        self.compactions = 0
        self._client = client
        self._params = params

    @property
    def threshold(self) -> int:
        """The input size (history plus the reply's room) past which older turns are compacted."""
        return int(self.context_window * self.compaction_share)

    async def send(self, content: str | Sequence[dict[str, Any]]) -> Message:
        """Add a user turn, compact the history if it has grown past the threshold, and get the reply
        (continued if it stops at ``max_tokens``)."""
        self.messages.append({"role": "user", "content": content})
        if await self._input_tokens(self.messages) + self.max_tokens > self.threshold:
            await self._compact()
        reply = await create_continued(
            self._client.messages.create,
            self._call_params(self.messages),
            max_continuations=self.max_continuations,
        )
        self.messages.append({"role": "assistant", "content": reply.content})
        return reply

    def _call_params(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        params: dict[str, Any] = {
            **self._params,
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": messages,
        }
        system = self.system_prompt
        if system is not None:
            params["system"] = system
        return params

    @property
    def system_prompt(self) -> str | None:
        """The system prompt of the next call: the given one, with the summary of older turns after it."""
        if self.summary is None:
            return self.system
        earlier = f"Summary of the conversation so far:\n{self.summary}"
        return earlier if self.system is None else f"{self.system}\n\n{earlier}"

    async def _input_tokens(self, messages: list[dict[str, Any]]) -> int:
        params = {k: v for k, v in self._call_params(messages).items() if k != "max_tokens"}
        counted = await self._client.messages.count_tokens(**params)
        return counted.input_tokens

    async def _compact(self) -> None:
        """Summarise the older turns (with the earlier summary) and keep the recent ones that fit."""
        keep_from = len(self.messages) - 1  # the new user turn is always kept
        budget = int(self.threshold * _KEEP_SHARE) - self.max_tokens
        # Walk back over whole exchanges (a user turn and the reply to it) while they fit.
        candidate = keep_from - 2
        while candidate > 0 and await self._input_tokens(self.messages[candidate:]) <= budget:
            keep_from = candidate
            candidate -= 2
        older, recent = self.messages[:keep_from], self.messages[keep_from:]
        if not older:
            return
        transcript = "\n".join(f"{m['role']}: {_plain(m['content'])}" for m in older)
        if self.summary is not None:
            transcript = f"Earlier summary:\n{self.summary}\n\n{transcript}"
        summary = await self._client.messages.create(
            model=self.compaction_model,
            max_tokens=_SUMMARY_MAX_TOKENS,
            system=_SUMMARY_PROMPT,
            messages=[{"role": "user", "content": transcript}],
        )
        self.summary = _text(summary).strip()
        self.messages = recent
        self.compactions += 1


def _context_window(client: AsyncClient, model: str) -> int:
    """The smallest context window among the models ``model`` may be served by (a policy's chain)."""
    book = PolicyBook.from_settings(client.settings.model_policies)
    window = book.context_window(model, default_catalog())
    if window is None:
        raise ValueError(f"model {model!r} is not in the model catalogue: give context_window")
    return window


def _text(message: Message) -> str:
    return "".join(block.text for block in message.content if isinstance(block, TextBlock))


def _plain(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, TextBlock):
            parts.append(block.text)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return " ".join(parts)


def _summed(usages: Any) -> Usage:
    total: Usage | None = None
    for usage in usages:
        if total is None:
            total = usage.model_copy()
            continue
        total.input_tokens += usage.input_tokens
        total.output_tokens += usage.output_tokens
        for name in ("cache_creation_input_tokens", "cache_read_input_tokens"):
            mine, theirs = getattr(total, name), getattr(usage, name)
            if mine is not None or theirs is not None:
                setattr(total, name, (mine or 0) + (theirs or 0))
    assert total is not None
    return total
