"""One chat turn: the user's message stored, the request built (history within budget, prompt version, cache
breakpoints), the call run by the shared pipeline, then the reply stored, or the failure recorded.

Storage follows the rule in ``store/chats.py``: the user's message is written (``pending``) before the call;
the reply and the question's ``ok`` are written together after it; a failure marks the question ``failed``
with the error. The next turn's history holds only completed pairs, so a failure never leaves the model a
question without its answer or half an answer.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import orjson
from sqlalchemy.exc import SQLAlchemyError

from claudegate.accounting.prices import PriceTable
from claudegate.chat.caching import place_breakpoints, system_blocks
from claudegate.chat.compaction import Compaction, Compactor, summary_block
from claudegate.chat.errors import TurnFailedError
from claudegate.chat.history import HistoryMessage, content_tokens, history_start
from claudegate.chat.prompts import choose_version
from claudegate.chat.reply import normalise_blocks, reply_text, usage_json
from claudegate.chat.request import Caller, ChatRequest
from claudegate.config import Settings
from claudegate.errors import ApiError, ClaudegateError, InvalidRequestError, NotFoundError
from claudegate.images import ImageError, prepare_blocks
from claudegate.pipeline.core import Pipeline
from claudegate.pipeline.describe import describe_call
from claudegate.pipeline.policies import PolicyBook
from claudegate.pipeline.relay import ReplyResult
from claudegate.pipeline.request import CallRequest
from claudegate.pipeline.sink import RawHeaders, ResponseSink
from claudegate.store import Store
from claudegate.store.chat_rows import (
    ConversationRow,
    MessageRow,
    NewConversation,
    NewMessage,
    PromptVersionRow,
    ReplyUsage,
)

__all__ = ["ChatService", "Turn", "TurnReply"]

logger = logging.getLogger(__name__)

_ANTHROPIC_VERSION: Final = b"2023-06-01"
_TITLE_CHARS: Final = 80


def new_chat_id() -> str:
    return "chat_" + secrets.token_hex(12)


def new_message_id() -> str:
    return "cmsg_" + secrets.token_hex(12)


@dataclass(slots=True)
class Turn:
    """A turn ready to run: the conversation (``new_chat`` when it starts one), the user's message, and the
    request for the model."""

    chat_id: str
    new_chat: NewConversation | None
    question: NewMessage
    body: dict[str, Any]
    model: str
    max_tokens: int
    prompt_name: str | None
    prompt_version: int | None
    breakpoints: list[str] = field(default_factory=list)
    history_messages: int = 0
    request_id: str | None = None  # the gateway's id of the call, as in its usage record
    max_continuations: int = 0  # how often a reply stopped by max_tokens is continued (chat/continuation.py)


@dataclass(frozen=True, slots=True)
class TurnReply:
    """A stored reply."""

    chat_id: str
    message_id: str
    question_id: str
    text: str
    content: list[dict[str, Any]]
    created_at: datetime
    model: str
    stop_reason: str | None
    usage: ReplyUsage
    prompt_name: str | None
    prompt_version: int | None

    def usage_json(self) -> dict[str, Any]:
        return usage_json(self.usage)


class ChatService:
    """Runs chat turns through the pipeline and keeps conversations in the store."""

    __slots__ = (
        "_compactor",
        "_many_upstreams",
        "_pipeline",
        "_policies",
        "_prices",
        "_settings",
        "_store",
    )

    def __init__(
        self,
        *,
        store: Store,
        pipeline: Pipeline,
        prices: PriceTable,
        settings: Settings,
        many_upstreams: bool = False,
        policies: PolicyBook | None = None,
    ) -> None:
        self._policies = policies or PolicyBook.from_settings(settings.model_policies)
        self._compactor = Compactor(
            store=store, pipeline=pipeline, settings=settings, policies=self._policies
        )
        self._store = store
        self._pipeline = pipeline
        self._prices = prices
        self._settings = settings
        self._many_upstreams = many_upstreams

    # -- preparing ----------------------------------------------------------------------------------------

    async def prepare(self, caller: Caller, request: ChatRequest, *, stream: bool) -> Turn:
        """Load (or plan) the conversation and build the request; nothing is stored yet."""
        settings = self._settings
        content = await _images_prepared(request.content, settings.image_max_long_side_px)
        question = NewMessage(
            id=new_message_id(), role="user", content=content, tokens=content_tokens(content)
        )
        version: PromptVersionRow | None = None
        prompt_name: str | None = None
        new_chat: NewConversation | None = None
        if request.chat_id is None:
            chat_id = new_chat_id()
            if request.prompt is not None:
                prompt_name = request.prompt
                version = await self._version_for_new_chat(
                    caller, request.prompt, chat_id, request.prompt_version
                )
            model = request.model or (version.model if version else None) or settings.chat_model
            new_chat = NewConversation(
                id=chat_id,
                org_id=caller.owner.org_id,
                title=_title(request.content),
                model=model,
                prompt_version_id=version.id if version else None,
                user_id=caller.owner.user_id,
                key_id=caller.identity.key_id,
            )
            history: list[MessageRow] = []
        else:
            chat_id = request.chat_id
            chat = await self._conversation(caller, chat_id)
            if request.prompt is not None and request.prompt != chat.prompt_name:
                raise InvalidRequestError(
                    f"prompt: chat {chat_id} uses prompt {chat.prompt_name!r} for good; start a new chat to "
                    f"use {request.prompt!r}"
                )
            prompt_name = chat.prompt_name
            if chat.prompt_version_id is not None:
                version = await self._store.prompts.version_by_id(chat.prompt_version_id)
            model = request.model or chat.model
            history = await self._store.chats.history(chat_id)

        max_tokens = request.max_tokens or settings.chat_max_tokens
        earlier = [HistoryMessage(row.role, row.content, row.tokens) for row in history]
        compaction = Compaction(None, 0)
        if earlier:
            compaction = await self._compactor.compact(
                caller.identity,
                chat_id,
                model,
                earlier,
                [row.id for row in history],
                new_tokens=question.tokens,
                max_tokens=max_tokens,
            )
        start = compaction.start + history_start(
            earlier[compaction.start :], settings.chat_history_tokens, new_tokens=question.tokens
        )
        messages = [{"role": row.role, "content": row.content} for row in earlier[start:]]
        messages.append({"role": "user", "content": question.content})
        body: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
        system = system_blocks(version.system) if version is not None else []
        if compaction.summary is not None:
            system.append(summary_block(compaction.summary))
        if system:
            body["system"] = system
        body["messages"] = messages
        if stream:
            body["stream"] = True
        breakpoints = place_breakpoints(body) if settings.chat_cache_breakpoints else []
        return Turn(
            chat_id=chat_id,
            new_chat=new_chat,
            question=question,
            body=body,
            model=model,
            max_tokens=max_tokens,
            prompt_name=prompt_name,
            prompt_version=version.version if version else None,
            breakpoints=breakpoints,
            history_messages=len(messages) - 1,
            max_continuations=request.max_continuations or 0,
        )

    async def _conversation(self, caller: Caller, chat_id: str) -> ConversationRow:
        chat = await self._store.chats.get_conversation(caller.owner, chat_id)
        if chat is None:
            # The same answer for another tenant's chat and for none at all: ids leak nothing.
            raise NotFoundError(f"chat {chat_id} not found")
        return chat

    async def _version_for_new_chat(
        self, caller: Caller, name: str, chat_id: str, pinned: int | None
    ) -> PromptVersionRow:
        prompt = await self._store.prompts.get_prompt(caller.owner.org_id, name)
        if prompt is None:
            raise InvalidRequestError(f"prompt: your organisation has no prompt named {name!r}")
        if pinned is not None:
            version = await self._store.prompts.get_version(prompt.id, pinned)
            if version is None:
                raise InvalidRequestError(f"prompt_version: prompt {name!r} has no version {pinned}")
            return version
        number = choose_version(prompt, chat_id)
        if number is None:
            raise InvalidRequestError(f"prompt: prompt {name!r} has no active version; activate one")
        version = await self._store.prompts.get_version(prompt.id, number)
        if version is None:
            raise ApiError(f"prompt {name!r} names version {number}, which does not exist")
        return version

    # -- running ------------------------------------------------------------------------------------------

    def call_for(self, caller: Caller, turn: Turn, *, request_id: str, headers: RawHeaders) -> CallRequest:
        identity = caller.identity
        forwarded: RawHeaders = [
            (b"content-type", b"application/json"),
            (b"anthropic-version", _ANTHROPIC_VERSION),
        ]
        # anthropic-beta is the caller's to choose; x-simulator-* lets tests and load tests script the
        # simulator through the chat API (a real upstream ignores them). Nothing else of the client's goes up.
        forwarded.extend(
            (name, value)
            for name, value in headers
            if name == b"anthropic-beta" or name.startswith(b"x-simulator-")
        )
        # A chat whose model is a policy name keeps it, for every turn.
        return describe_call(
            turn.body,
            orjson.dumps(turn.body),
            identity=identity,
            settings=self._settings,
            policies=self._policies,
            upstreams=2 if self._many_upstreams else 1,
            headers=forwarded,
            asked=headers,
            request_id=request_id,
            sticky=f"chat:{turn.chat_id}",
        )

    async def begin(self, turn: Turn, request_id: str) -> None:
        """Store the user's message (and the new conversation) before the call."""
        turn.request_id = request_id
        await self._store.chats.start_turn(
            chat_id=turn.chat_id, new_chat=turn.new_chat, message=turn.question, request_id=request_id
        )

    async def run(self, call: CallRequest, sink: ResponseSink) -> ReplyResult:
        return await self._pipeline.run(call, sink)

    async def complete(
        self,
        turn: Turn,
        result: ReplyResult,
        *,
        content: Sequence[Any],
        stop_reason: str | None,
        model: str | None,
    ) -> TurnReply:
        """Store the reply with its question turned ``ok``."""
        blocks = normalise_blocks(content)
        usage = replace(self._usage(result, model or turn.model), request_id=turn.request_id)
        reply = NewMessage(
            id=new_message_id(),
            role="assistant",
            content=blocks,
            tokens=content_tokens(blocks),
            model=usage.model,
        )
        try:
            created = await self._store.chats.complete_turn(
                chat_id=turn.chat_id,
                question_id=turn.question.id,
                reply=reply,
                stop_reason=stop_reason,
                usage=usage,
            )
        except (SQLAlchemyError, OSError) as error:
            logger.error("chat %s: the reply could not be stored: %s", turn.chat_id, error)
            raise TurnFailedError(
                turn.chat_id, ApiError("the reply could not be stored; the question was not answered")
            ) from None
        return TurnReply(
            chat_id=turn.chat_id,
            message_id=reply.id,
            question_id=turn.question.id,
            text=reply_text(blocks),
            content=blocks,
            created_at=created,
            model=usage.model or turn.model,
            stop_reason=stop_reason,
            usage=usage,
            prompt_name=turn.prompt_name,
            prompt_version=turn.prompt_version,
        )

    async def fail(self, turn: Turn, error: ClaudegateError, result: ReplyResult | None) -> TurnFailedError:
        """Record the failure on the user's message; returns the error to answer."""
        usage = self._usage(result, turn.model) if result is not None else ReplyUsage(model=turn.model)
        try:
            await self._store.chats.fail_turn(
                question_id=turn.question.id,
                error_type=error.error_type,
                error_message=error.message,
                usage=usage,
            )
        except (SQLAlchemyError, OSError) as db_error:
            # The question stays pending, which history leaves out like a failure: still consistent.
            logger.error("chat %s: the failure could not be recorded: %s", turn.chat_id, db_error)
        return TurnFailedError(turn.chat_id, error)

    def _usage(self, result: ReplyResult | None, model: str) -> ReplyUsage:
        if result is None:
            return ReplyUsage(model=model)
        usage = result.usage
        used_model = result.model or model
        cost: Decimal | None = self._prices.cost(used_model, usage, batch=False)
        return ReplyUsage(tokens=usage, cost_usd=cost, model=used_model)


def _title(content: Sequence[Any]) -> str:
    text = " ".join(reply_text(content).split())
    if not text:
        return "(no text)"
    return text if len(text) <= _TITLE_CHARS else text[: _TITLE_CHARS - 1] + "…"


async def _images_prepared(content: list[dict[str, Any]], max_long_side: int) -> list[dict[str, Any]]:
    """The message's image blocks checked, resized and re-encoded (claudegate.images), in a worker thread:
    decoding and resizing take milliseconds of CPU a call on the event loop should not wait behind."""
    if not any(block.get("type") == "image" for block in content):
        return content
    try:
        return await asyncio.to_thread(prepare_blocks, content, max_long_side=max_long_side)
    except ImageError as error:
        raise InvalidRequestError(f"message: {error}") from None
