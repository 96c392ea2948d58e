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
# "text":"…"}}``.
_TEXT_DELTA: Final = b',"delta":{"type":"text_delta","text":'
_CHUNK_END: Final = b',"logprobs":null,"finish_reason":null}]}\n\n'
_DELTA_EVENT: Final = b"event: content_block_delta\ndata: "
_DELTA_PREFIX: Final = len(_DELTA_EVENT) + len(b'{"type":"content_block_delta","index":0')
_TEXT_CHUNK_END: Final = b"}" + _CHUNK_END
_QUOTE: Final = ord('"')


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

        Anthropic writes ``event: NAME\\ndata: JSON\\n\\n``. Text deltas, most of a stream, are taken
        straight from their block: the text is already the JSON string the chunk carries, so it is copied
        rather than parsed and serialised again (which made the translated stream cost half again the
        native path's CPU, measured with benchmarks/openai_overhead.py). Only a string without quotes inside
        is taken this way, so it cannot hide another field; every other event is parsed.
        """
        if self._parser is None and b"\r" in chunk:
            self._parser = SSEParser()  # not Anthropic's own writing: the general parser reads it
            chunk, self._pending = self._pending + chunk, b""
        if self._parser is not None:
            return b"".join(self.feed(name, data) for name, data in self._parser.feed_fields(chunk))
        blocks = (self._pending + chunk if self._pending else chunk).split(b"\n\n")
        self._pending = blocks.pop()
        start = self._content_start
        out: list[bytes] = []
        for block in blocks:
            if start and block.startswith(_DELTA_EVENT) and block.endswith(b'"}}'):
                text = block.find(_TEXT_DELTA, _DELTA_PREFIX) + len(_TEXT_DELTA)
                if (
                    text >= len(_TEXT_DELTA) + _DELTA_PREFIX
                    and block[text] == _QUOTE
                    and block.find(b'"', text + 1, -3) < 0
                    and block.count(b"\n") == 1  # one data line
                ):
                    out.append(start + block[text:-2] + _TEXT_CHUNK_END)
                    continue
            out.extend(self.feed(name, data) for name, data in SSEParser().feed_fields(block + b"\n\n"))
            start = self._content_start  # set by message_start
        return b"".join(out)

    def feed(self, name: str | None, data: bytes) -> bytes:
        if name in ("ping", None) or self.done:
            return b""
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
