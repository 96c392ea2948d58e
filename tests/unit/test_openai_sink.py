"""The sink that turns the upstream's reply into OpenAI's as the pipeline relays it."""

from __future__ import annotations

from typing import Any

import orjson

from claudegate.server.openai_sink import OpenAISink

MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [{"type": "text", "text": "Hello"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 3, "output_tokens": 1},
}


async def relay(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, dict[str, str], Any]:
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    sink = OpenAISink(receive, send, [(b"x-request-id", b"req_cg_1")], include_usage=False)
    await sink.start(status, [*headers, (b"content-length", str(len(body)).encode())])
    await sink.send(body[:5], more=True)
    await sink.send(body[5:], more=False)
    start, *bodies = messages
    out = b"".join(message["body"] for message in bodies)
    sent = {name.decode(): value.decode() for name, value in start["headers"]}
    assert sent["content-length"] == str(len(out))
    return start["status"], sent, orjson.loads(out)


async def test_a_message_becomes_a_completion_with_the_upstreams_headers() -> None:
    status, headers, body = await relay(
        200, [(b"content-type", b"application/json"), (b"request-id", b"req_up")], orjson.dumps(MESSAGE)
    )
    assert status == 200
    assert (headers["request-id"], headers["x-request-id"]) == ("req_up", "req_cg_1")
    assert headers["content-type"] == "application/json"
    assert body["choices"][0]["message"]["content"] == "Hello"


async def test_an_upstream_rate_limit_keeps_its_retry_after() -> None:
    error = b'{"type":"error","error":{"type":"rate_limit_error","message":"Rate limited"}}'
    status, headers, body = await relay(
        429, [(b"content-type", b"application/json"), (b"retry-after", b"7")], error
    )
    assert (status, headers["retry-after"]) == (429, "7")
    assert body["error"]["code"] == "rate_limit_exceeded"


async def test_a_reply_that_is_not_a_message_is_a_bad_gateway() -> None:
    status, _, body = await relay(200, [(b"content-type", b"application/json")], b'{"hello": "world"}')
    assert status == 502
    assert body["error"]["message"] == "The upstream's reply is not a message"
