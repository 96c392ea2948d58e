"""Claude's event stream as OpenAI's: ``chat.completion.chunk`` events, then ``data: [DONE]``.

    message_start                    → a chunk with ``delta: {"role": "assistant", "content": ""}``
    text_delta                       → ``delta.content``
    thinking_delta                   → ``delta.reasoning_content``
    content_block_start (tool_use)   → ``delta.tool_calls[i]`` with id, name and ``arguments: ""``
    input_json_delta                 → ``delta.tool_calls[i].function.arguments`` (the partial JSON)
    message_delta                    → a chunk with ``finish_reason``
    message_stop                     → the usage chunk (``choices: []``) if asked for, then ``[DONE]``
    error                            → ``data: {"error": …}`` in OpenAI's envelope, which the SDKs raise

``i`` counts tool calls from 0, as OpenAI's ``index`` does. Pings and signatures have no counterpart.
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson

from claudegate.openai.errors import translate_error
from claudegate.openai.response import completion_id, finish_reason, openai_usage
from claudegate.wire.sse import SSEParser

__all__ = ["DONE", "ChunkTranslator"]

DONE: Final = b"data: [DONE]\n\n"
# A text delta as Anthropic writes it: ``{"type":"content_block_delta","index":N,"delta":{"type":"text_delta",
# "text":"…"}}``. Its text is already a JSON string, which the chunk can carry as it is.
_TEXT_DELTA: Final = b',"delta":{"type":"text_delta","text":'
_CHUNK_END: Final = b',"logprobs":null,"finish_reason":null}]}\n\n'
_DELTA_EVENT: Final = b"event: content_block_delta\ndata: "


class ChunkTranslator:
    """Feed it Anthropic's stream (``feed_bytes``, in any chunking) or its events one by one (``feed``, name
    and data); it gives the OpenAI stream's bytes."""

    __slots__ = (
        "_content_start",
        "_created",
        "_finish",
        "_head",
        "_include_usage",
        "_parser",
        "_pending",
        "_tool_index",
        "_usage",
        "done",
    )

    def __init__(self, *, include_usage: bool, created: int | None = None) -> None:
        self._include_usage = include_usage
        self._created = created if created is not None else int(time.time())
        self._head = b""  # the chunks' common opening: id, object, created, model
        self._content_start = b""  # a text chunk up to its content
        self._tool_index: dict[int, int] = {}  # content block index → tool call index
        self._usage: dict[str, Any] = {}
        self._finish: str | None = None
        self.done = False  # the stream ended ([DONE] or an error was sent)
        self._pending = b""  # bytes after the last complete event
        self._parser: SSEParser | None = None  # for a stream with CRs in it, which the fast path leaves alone

    def feed_bytes(self, chunk: bytes) -> bytes:
        """Translate the complete events in ``chunk`` (with what was left of the previous one).

        Anthropic writes ``event: NAME\\ndata: JSON\\n\\n``: text deltas, most of a stream, are taken straight
        from their block (``_text_chunk``); every other event goes through the SSE parser.
        """
        if self._parser is None and b"\r" in chunk:
            self._parser = SSEParser()
            chunk, self._pending = self._pending + chunk, b""
        if self._parser is not None:
            return b"".join(self.feed(name, data) for name, data in self._parser.feed_fields(chunk))
        blocks = (self._pending + chunk if self._pending else chunk).split(b"\n\n")
        self._pending = blocks.pop()
        out: list[bytes] = []
        for block in blocks:
            translated = (
                self._text_chunk(block[len(_DELTA_EVENT) :]) if block.startswith(_DELTA_EVENT) else None
            )
            if translated is None:
                translated = b"".join(
                    self.feed(name, data) for name, data in SSEParser().feed_fields(block + b"\n\n")
                )
            out.append(translated)
        return b"".join(out)

    def _text_chunk(self, data: bytes) -> bytes | None:
        """The chunk of a text delta whose text can be carried over as it is, else None.

        Its text goes into the chunk as the JSON string it already is, without parsing the event and
        serialising the chunk (about half of the translation's CPU per streamed call). Only a string without
        quotes inside is taken this way, so it cannot hide another field; anything else is parsed.
        """
        if not self._content_start or self.done or not data.endswith(b'"}}'):
            return None
        position = data.find(_TEXT_DELTA)
        if position < 0:
            return None
        text = data[position + len(_TEXT_DELTA) : -2]
        if not text.startswith(b'"') or b'"' in text[1:-1]:
            return None
        return self._content_start + text + b"}" + _CHUNK_END

    def feed(self, name: str | None, data: bytes) -> bytes:
        if name in ("ping", None) or self.done:
            return b""
        if name == "content_block_delta":
            text_chunk = self._text_chunk(data)
            if text_chunk is not None:
                return text_chunk
        event: dict[str, Any] = orjson.loads(data)
        kind = event.get("type", name)
        if kind == "content_block_delta":
            delta = event["delta"]
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                return self._chunk({"content": delta["text"]})
            if delta_type == "thinking_delta":
                return self._chunk({"reasoning_content": delta["thinking"]})
            if delta_type == "input_json_delta":
                index = self._tool_index.get(event["index"])
                if index is None or not delta["partial_json"]:
                    return b""
                return self._chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": delta["partial_json"]}}]}
                )
            return b""
        if kind == "content_block_start":
            block = event["content_block"]
            if block.get("type") != "tool_use":
                return b""
            index = self._tool_index[event["index"]] = len(self._tool_index)
            call = {
                "index": index,
                "id": block["id"],
                "type": "function",
                "function": {"name": block["name"], "arguments": ""},
            }
            return self._chunk({"tool_calls": [call]})
        if kind == "message_start":
            message = event["message"]
            self._usage.update(message.get("usage") or {})
            self._head = (
                b'{"id":'
                + orjson.dumps(completion_id(message.get("id")))
                + b',"object":"chat.completion.chunk","created":'
                + str(self._created).encode()
                + b',"model":'
                + orjson.dumps(message.get("model"))
            )
            self._content_start = b"data: " + self._head + b',"choices":[{"index":0,"delta":{"content":'
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "message_delta":
            self._usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            self._finish = finish_reason((event.get("delta") or {}).get("stop_reason"))
            return self._chunk({}, self._finish)
        if kind == "message_stop":
            self.done = True
            if not self._include_usage:
                return DONE
            usage = orjson.dumps(openai_usage(self._usage))
            return b"data: " + self._head + b',"choices":[],"usage":' + usage + b"}\n\n" + DONE
        if kind == "error":
            self.done = True
            error = event.get("error") or {}
            translated = translate_error(500, error.get("type"), error.get("message") or "stream error")
            return b"data: " + translated.body + b"\n\n"
        return b""

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + self._head + b',"choices":[' + orjson.dumps(choice) + b"]}\n\n"
