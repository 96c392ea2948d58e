"""The chat API over HTTP: a backend a web or mobile chat product can call directly.

    POST   /chat         {message, chat_id?, prompt?, prompt_version?, model?, max_tokens?} -> the reply
    POST   /chat/stream  the same                                           -> the reply as events (SSE)
    GET    /chats        ?limit=&after_id=&before_id=                       -> the caller's chats
    GET    /chats/{id}   ?limit=&after_id=&before_id=                       -> a chat with its messages
    DELETE /chats/{id}                                                      -> {"id", "type": "chat_deleted"}

Callers use their gateway key as for ``/v1/messages``. The organisation and user come from the key; a key
allowed to act for end users (``act_for_users``) names one with ``x-user-id: NAME`` and then acts as that user
of its organisation (created on first use). A chat is visible to its organisation's own keys and, when it
belongs to a user, to that user; any other caller gets 404, as for a chat that does not exist.

Lists are paginated like Anthropic's: ``limit`` (1 to 1000; default 20 chats, 100 messages), ``after_id``
for the page after an item, ``before_id`` for the page before it; chats newest first, messages oldest first.
Every answer carries ``x-claudegate-chat-id`` once the chat is known, errors included, so a client whose first
message failed still learns the id of the conversation that holds it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
from sqlalchemy.exc import SQLAlchemyError

from claudegate.chat.continuation import continue_reply, streamed_message
from claudegate.chat.errors import ClientClosedError, TurnFailedError, error_from_reply
from claudegate.chat.render import chat_json, message_json
from claudegate.chat.request import Caller, ChatRequest, caller_for
from claudegate.chat.service import ChatService, Turn, TurnReply
from claudegate.chat.sink import ChatStreamSink, ReplyBuffer
from claudegate.chat.sse import done_event, error_event
from claudegate.errors import (
    SHUTTING_DOWN,
    ApiError,
    ClaudegateError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    OverloadedError,
    error_for_type,
)
from claudegate.keys import Identity
from claudegate.pipeline.describe import MAX_BODY_BYTES, requested_deadline
from claudegate.pipeline.relay import UpstreamDropped
from claudegate.pipeline.sink import Departure
from claudegate.runtime.asgi import header, send_error, send_json
from claudegate.runtime.call import GatewayCall, read_json_body
from claudegate.store.render import iso
from claudegate.store.rows import StoreError
from claudegate.wire.pagination import page_params
from claudegate.wire.paths import CHAT_ID, valid_id

if TYPE_CHECKING:
    from claudegate.runtime.services import Services

__all__ = ["CHAT_ID_HEADER", "dispatch", "is_chat_path"]

CHAT_ID_HEADER = b"x-claudegate-chat-id"
USER_HEADER = b"x-user-id"

logger = logging.getLogger(__name__)

Authenticate = Callable[[GatewayCall], Awaitable[Identity]]


def is_chat_path(path: str) -> bool:
    return path in ("/chat", "/chat/stream", "/chats") or path.startswith("/chats/")


async def dispatch(services: Services, call: GatewayCall, authenticate: Authenticate) -> None:
    """Serve one chat API call; ClaudegateError raised here is answered by the gateway."""
    try:
        await _route(services, call, authenticate)
    except ConnectionResetError:
        return  # the client left while sending its request: nobody to answer
    except StoreError as error:
        raise InvalidRequestError(str(error)) from None
    except (SQLAlchemyError, OSError) as error:
        logger.error("chat API: database error on %s %s: %s", call.scope["method"], call.scope["path"], error)
        raise ApiError("the gateway's database is unavailable; retry shortly") from None


async def _route(services: Services, call: GatewayCall, authenticate: Authenticate) -> None:
    path: str = call.scope["path"]
    method: str = call.scope["method"]
    if path in ("/chat", "/chat/stream"):
        if method != "POST":
            raise MethodNotAllowedError(method, path, ("POST",))
        await _chat(services, call, authenticate, stream=path == "/chat/stream")
        return
    if path == "/chats":
        if method != "GET":
            raise MethodNotAllowedError(method, path, ("GET",))
        await _list(services, call, await _caller(services, call, authenticate))
        return
    chat_id = path[len("/chats/") :]
    if not chat_id or "/" in chat_id:
        raise NotFoundError(f"Not Found: {method} {path} is not a route of this API")
    if method not in ("GET", "DELETE"):
        raise MethodNotAllowedError(method, path, ("GET", "DELETE"))
    if not valid_id(CHAT_ID, chat_id):  # not an id at all: never looked up
        await _caller(services, call, authenticate)  # still 401 first for a caller without a key
        raise NotFoundError(f"chat {chat_id} not found")
    if method == "GET":
        await _get(services, call, await _caller(services, call, authenticate), chat_id)
    else:
        caller = await _caller(services, call, authenticate)
        if not await services.store.chats.delete_conversation(caller.owner, chat_id):
            raise NotFoundError(f"chat {chat_id} not found")
        await _json(call, {"id": chat_id, "type": "chat_deleted"})


def _service(services: Services) -> ChatService:
    return ChatService(
        store=services.store,
        pipeline=services.pipeline,
        prices=services.prices,
        settings=services.settings,
        many_upstreams=len(services.pool.members) > 1,
        policies=services.policies,
    )


async def _caller(services: Services, call: GatewayCall, authenticate: Authenticate) -> Caller:
    identity = await authenticate(call)
    end_user = header(call.scope, USER_HEADER)
    return await caller_for(
        services.store, identity, end_user.decode("latin-1").strip() if end_user is not None else None
    )


async def _json(call: GatewayCall, data: object, *, chat_id: str | None = None) -> None:
    headers = [call.id_header]
    if chat_id is not None:
        headers.append((CHAT_ID_HEADER, chat_id.encode()))
    await send_json(call.send, 200, orjson.dumps(data), headers)


def _query(call: GatewayCall) -> dict[str, str]:
    return dict(parse_qsl(call.scope.get("query_string", b"").decode("latin-1")))


async def _list(services: Services, call: GatewayCall, caller: Caller) -> None:
    before_id, after_id, limit = page_params(_query(call))
    page = await services.store.chats.list_conversations(
        caller.owner, limit=limit, after_id=after_id, before_id=before_id
    )
    await _json(
        call,
        {
            "data": [chat_json(chat) for chat in page.items],
            "has_more": page.has_more,
            "first_id": page.first_id,
            "last_id": page.last_id,
        },
    )


async def _get(services: Services, call: GatewayCall, caller: Caller, chat_id: str) -> None:
    chat = await services.store.chats.get_conversation(caller.owner, chat_id)
    if chat is None:
        raise NotFoundError(f"chat {chat_id} not found")
    before_id, after_id, limit = page_params(_query(call), default_limit=100)
    page = await services.store.chats.list_messages(
        chat_id, limit=limit, after_id=after_id, before_id=before_id
    )
    await _json(
        call,
        {
            **chat_json(chat),
            "messages": [message_json(message) for message in page.items],
            "has_more": page.has_more,
            "first_id": page.first_id,
            "last_id": page.last_id,
        },
        chat_id=chat_id,
    )


async def _chat(services: Services, call: GatewayCall, authenticate: Authenticate, *, stream: bool) -> None:
    caller = await _caller(services, call, authenticate)
    request = ChatRequest.parse(await read_json_body(call, MAX_BODY_BYTES, stored=True))
    requested_deadline(None, call.scope["headers"])  # a bad deadline header is refused before the turn
    service = _service(services)
    turn = await service.prepare(caller, request, stream=stream)
    await service.begin(turn, call.request_id)
    try:
        if stream:
            await _stream_turn(service, call, caller, turn, services.calls)
        else:
            await _json_turn(service, call, caller, turn, services.calls)
    except TurnFailedError as failed:
        await send_error(
            call.send, failed.error, call.request_id, [(CHAT_ID_HEADER, failed.chat_id.encode())]
        )


def _reply_json(reply: TurnReply) -> dict[str, Any]:
    return {
        "chat_id": reply.chat_id,
        "message_id": reply.message_id,
        "reply": reply.text,
        "created_at": iso(reply.created_at),
        "usage": reply.usage_json(),
        "model": reply.model,
        "stop_reason": reply.stop_reason,
        "prompt": (
            {"name": reply.prompt_name, "version": reply.prompt_version}
            if reply.prompt_name is not None
            else None
        ),
    }


async def _json_turn(
    service: ChatService, call: GatewayCall, caller: Caller, turn: Turn, calls: set[Departure]
) -> None:
    sink = ReplyBuffer(call.receive)
    sink.watch()
    calls.add(sink)  # shutdown stops it at its grace deadline
    try:
        result = await service.run(
            service.call_for(caller, turn, request_id=call.request_id, headers=call.scope["headers"]), sink
        )
    except ClaudegateError as error:
        raise await service.fail(turn, error, None) from None
    except UpstreamDropped:
        raise await service.fail(turn, ApiError("the model's reply broke off"), None) from None
    finally:
        calls.discard(sink)
        sink.close()
    if sink.shut_down:
        raise await service.fail(turn, OverloadedError(SHUTTING_DOWN), result)
    if result.client_gone:
        await service.fail(turn, ClientClosedError(), result)
        return
    if sink.status != 200:
        raise await service.fail(turn, error_from_reply(sink.status, sink.headers, sink.body), result)
    try:
        message = orjson.loads(sink.body)
    except orjson.JSONDecodeError:
        raise await service.fail(turn, ApiError("the model's reply was not valid JSON"), result) from None
    if turn.max_continuations and message.get("stop_reason") == "max_tokens":
        message = await continue_reply(
            service, caller, turn, result, message, headers=call.scope["headers"], receive=call.receive
        )
    reply = await service.complete(
        turn,
        result,
        content=message.get("content") or [],
        stop_reason=message.get("stop_reason"),
        model=message.get("model"),
    )
    await _json(call, _reply_json(reply), chat_id=turn.chat_id)


async def _stream_turn(
    service: ChatService, call: GatewayCall, caller: Caller, turn: Turn, calls: set[Departure]
) -> None:
    chat_header = (CHAT_ID_HEADER, turn.chat_id.encode())
    sink = ChatStreamSink(call.receive, call.send, [call.id_header, chat_header])
    sink.watch()
    calls.add(sink)  # shutdown stops it at its grace deadline
    try:
        try:
            result = await service.run(
                service.call_for(caller, turn, request_id=call.request_id, headers=call.scope["headers"]),
                sink,
            )
        except ClaudegateError as error:
            raise await service.fail(turn, error, None) from None
        except UpstreamDropped:
            raise await service.fail(
                turn, ApiError("the model's stream broke off before its end"), None
            ) from None
        if sink.shut_down:
            raise await service.fail(turn, OverloadedError(SHUTTING_DOWN), result)
        if result.client_gone:
            await service.fail(turn, ClientClosedError(), result)
            return
        if not sink.streaming:
            raise await service.fail(turn, error_from_reply(sink.status, sink.headers, sink.body), result)
        builder = sink.builder
        if not builder.completed:
            error_type, message = builder.error or (
                "api_error",
                "the model's stream ended before its reply did",
            )
            raise await service.fail(turn, error_for_type(error_type, message), result)
        whole = streamed_message(sink)
        assert whole is not None  # streaming and completed
        if turn.max_continuations and whole["stop_reason"] == "max_tokens":
            sink.close()  # each continuation watches the client in its turn
            pieces: list[ChatStreamSink] = []

            def piece_sink() -> ChatStreamSink:
                piece = ChatStreamSink(call.receive, call.send, [], opened=True)
                pieces.append(piece)
                calls.add(piece)  # shutdown stops a continuation as it stops the first call
                return piece

            try:
                whole = await continue_reply(
                    service,
                    caller,
                    turn,
                    result,
                    whole,
                    headers=call.scope["headers"],
                    receive=call.receive,
                    new_sink=piece_sink,
                )
            finally:
                calls.difference_update(pieces)
        reply = await service.complete(
            turn,
            result,
            content=whole.get("content") or [],
            stop_reason=whole.get("stop_reason"),
            model=whole.get("model"),
        )
        await sink.finish(
            done_event(
                chat_id=reply.chat_id,
                message_id=reply.message_id,
                full_text=reply.text,
                usage=reply.usage_json(),
                extra={"model": reply.model, "stop_reason": reply.stop_reason},
            )
        )
    except TurnFailedError as failed:
        if not sink.streaming:
            raise
        await sink.finish(
            error_event(
                chat_id=turn.chat_id, error_type=failed.error.error_type, message=failed.error.message
            )
        )
    finally:
        calls.discard(sink)
        sink.close()
