"""Deterministic replies: the same request always gets the same content.

Replies are built from pieces that are exactly one token each for ``claudegate.wire.tokens`` (a word with
its leading space, a punctuation mark, a paragraph break), so the output token count is the number of
pieces and anyone counting the streamed text arrives at the same figure.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from typing import Any

import orjson

from claudegate.simulator.prompt import Prompt
from claudegate.wire.tokens import count_text_tokens, token_pieces

__all__ = ["PlannedBlock", "ReplyPlan", "plan_reply", "request_seed"]

# Every word has at most eight letters, so that " word" is exactly one token; a longer one would make the
# streamed token count (one per piece) disagree with the count of the text. tests/unit checks this.
_WORD_TEXT = (
    "the of and to in is it that for on as with was be by this are or at from but not have an they which "
    "one you were all we can her has there been if more when will would who so no out up into than them "
    "time some could these two may then first any like now my such make over our even most made after "
    "also did many before must through back years where much your way well down should because each just "
    "those people how too little state good very world still own see men work long get here between both "
    "life being under never day same another know while last might great old year off come since against "
    "go came right used take three small large next early young key few public bad able model token "
    "answer stream cache prompt request reply limit bucket minute second queue budget cost usage system"
)
_WORDS: tuple[str, ...] = tuple(_WORD_TEXT.split())
_SPACED = tuple(" " + word for word in _WORDS)
_CAPITALISED = tuple(word.capitalize() for word in _WORDS)

_MIN_REPLY_TOKENS = 12
_REPLY_SPREAD = 48
_SIGNATURE_BYTES = 48


@dataclass(slots=True)
class PlannedBlock:
    kind: str  # "text", "thinking" or "tool_use"
    pieces: list[str] = field(default_factory=list)  # text, thinking text, or chunks of the tool input JSON
    hidden_tokens: int = 0  # thinking produced but not shown (display "omitted"): billed all the same
    tool_id: str = ""
    tool_name: str = ""
    tool_input: dict[str, Any] = field(default_factory=dict)
    signature: str = ""

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def to_api(self) -> dict[str, Any]:
        if self.kind == "text":
            return {"type": "text", "text": self.text}
        if self.kind == "thinking":
            return {"type": "thinking", "thinking": self.text, "signature": self.signature}
        return {"type": "tool_use", "id": self.tool_id, "name": self.tool_name, "input": self.tool_input}


@dataclass(slots=True)
class ReplyPlan:
    blocks: list[PlannedBlock]
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int
    # Renderings that depend on the plan alone, kept with it: identical requests share one plan (the
    # engine's prepared-request cache), so each is encoded once. See reply.py.
    content_json: bytes | None = None
    sse_content: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)


def request_seed(body: dict[str, Any]) -> int:
    """A seed from everything that shapes the reply's content (not max_tokens or stream)."""
    shaping = {k: body.get(k) for k in ("model", "system", "messages", "tools", "tool_choice", "thinking")}
    if isinstance(shaping["thinking"], dict):
        # Whether thinking is shown changes what the client sees, not what the model thinks.
        shaping["thinking"] = {k: v for k, v in shaping["thinking"].items() if k != "display"}
    digest = hashlib.blake2b(orjson.dumps(shaping, option=orjson.OPT_SORT_KEYS), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def plan_reply(
    body: dict[str, Any], prompt: Prompt, *, seed: int, reply_tokens: int | None = None
) -> ReplyPlan:
    """The full reply to a validated request: its blocks, stop reason and output token count."""
    rng = random.Random(seed)
    max_tokens: int = body["max_tokens"]
    prefill = _prefill_tokens(body["messages"])
    if reply_tokens is not None and prefill:
        # A reply that continues a prefilled assistant turn (a client continuing a reply cut by max_tokens)
        # writes only what the whole answer still lacks.
        reply_tokens = max(1, reply_tokens - prefill)
    blocks: list[PlannedBlock] = []

    thinking = body.get("thinking") or {}
    if thinking.get("type") in ("enabled", "adaptive"):
        limit = thinking.get("budget_tokens", 2048)
        words = _sentences(rng, min(limit, 20 + rng.randrange(40)))
        signature = rng.randbytes(_SIGNATURE_BYTES).hex()
        if thinking.get("display") == "omitted":
            blocks.append(PlannedBlock("thinking", hidden_tokens=len(words), signature=signature))
        else:
            blocks.append(PlannedBlock("thinking", pieces=words, signature=signature))

    tool = _chosen_tool(body, prompt, rng)
    if tool is None or (body.get("tool_choice") or {}).get("type") not in ("any", "tool"):
        if tool is not None:
            text = token_pieces(f"I'll use the {tool['name']} tool.")
        elif reply_tokens is not None:
            text = _exactly(_sentences(rng, reply_tokens), reply_tokens)
        else:
            length = _MIN_REPLY_TOKENS + rng.randrange(_REPLY_SPREAD)
            text = _sentences(rng, length + min(count_text_tokens(prompt.last_user_text), 600) // 3)
        blocks.append(PlannedBlock("text", pieces=text))
    for used in (tool, *_parallel_tools(body, prompt, tool)) if tool is not None else ():
        tool_input = _value_for_schema(used["input_schema"], rng, used["input_schema"], depth=0)
        chunks = token_pieces(orjson.dumps(tool_input).decode())
        tool_id = "toolu_01" + rng.randbytes(11).hex()[:22]
        blocks.append(
            PlannedBlock(
                "tool_use", pieces=chunks, tool_id=tool_id, tool_name=used["name"], tool_input=tool_input
            )
        )

    return _finish(blocks, max_tokens, body.get("stop_sequences") or [], tool is not None)


def _finish(blocks: list[PlannedBlock], max_tokens: int, stop_sequences: list[str], tool: bool) -> ReplyPlan:
    """Cut the reply at a stop sequence or at max_tokens, whichever comes first."""
    for block in blocks:
        if block.kind != "text" or not stop_sequences:
            continue
        text = block.text
        found = [(text.find(s), s) for s in stop_sequences if s and s in text]
        if found:
            position, sequence = min(found)
            block.pieces = token_pieces(text[:position]) if position else []
            kept = blocks[: blocks.index(block) + 1]
            return _cut_to_budget(kept, max_tokens, "stop_sequence", sequence)
    return _cut_to_budget(blocks, max_tokens, "tool_use" if tool else "end_turn", None)


def _cut_to_budget(
    blocks: list[PlannedBlock], max_tokens: int, stop_reason: str, stop_sequence: str | None
) -> ReplyPlan:
    used = 0
    kept: list[PlannedBlock] = []
    for block in blocks:
        room = max_tokens - used
        if room <= 0:
            return ReplyPlan(kept, "max_tokens", None, used)
        # Every piece is one token (tests/unit/test_tokens.py holds us to it); hidden thinking counts too.
        cost = len(block.pieces) + block.hidden_tokens
        if cost > room:
            block.pieces = block.pieces[:room]
            block.hidden_tokens = min(block.hidden_tokens, room)
            if block.kind == "tool_use":
                block.tool_input = {}
            kept.append(block)
            return ReplyPlan(kept, "max_tokens", None, used + room)
        used += cost
        kept.append(block)
    return ReplyPlan(kept, stop_reason, stop_sequence, used)


def _sentences(rng: random.Random, tokens: int) -> list[str]:
    """At least ``tokens`` pieces of prose, ending at the end of a sentence."""
    pieces: list[str] = []
    draw = rng.random  # one float per choice: a third of the cost of rng.choice
    count = len(_WORDS)
    sentences_in_paragraph = 0
    while len(pieces) < tokens:
        length = 5 + int(draw() * 12)
        first = _CAPITALISED[int(draw() * count)]
        pieces.append(" " + first if pieces and pieces[-1] != "\n\n" else first)
        for position in range(1, length):
            pieces.append(_SPACED[int(draw() * count)])
            if position < length - 2 and draw() < 0.08:
                pieces.append(",")
        pieces.append(".")
        sentences_in_paragraph += 1
        if sentences_in_paragraph == 4 and len(pieces) < tokens:
            pieces.append("\n\n")
            sentences_in_paragraph = 0
    return pieces


def _prefill_tokens(messages: list[dict[str, Any]]) -> int:
    """The text tokens of a final assistant turn (a prefill), 0 without one."""
    last = messages[-1] if messages else {}
    if last.get("role") != "assistant":
        return 0
    content = last.get("content")
    if isinstance(content, str):
        return count_text_tokens(content)
    return sum(
        count_text_tokens(block.get("text", ""))
        for block in content or ()
        if isinstance(block, dict) and block.get("type") == "text"
    )


def _exactly(pieces: list[str], tokens: int) -> list[str]:
    """Prose cut to exactly ``tokens`` pieces (``x-simulator-reply-tokens``), ending with a full stop."""
    pieces = pieces[:tokens]
    if pieces and pieces[-1] != ".":
        pieces[-1] = "."
    return pieces


def _parallel_tools(body: dict[str, Any], prompt: Prompt, first: dict[str, Any]) -> list[dict[str, Any]]:
    """The other tools the last user turn names, used in the same reply (parallel tool use), unless the
    tool choice is not ``auto`` or disables parallel use."""
    choice = body.get("tool_choice") or {"type": "auto"}
    if choice["type"] != "auto" or choice.get("disable_parallel_tool_use") is True:
        return []
    asked = prompt.last_user_text.lower()
    return [t for t in prompt.custom_tools if t is not first and t["name"].lower() in asked]


def _chosen_tool(body: dict[str, Any], prompt: Prompt, rng: random.Random) -> dict[str, Any] | None:
    tools = prompt.custom_tools
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice["type"] == "none":
        return None
    if choice["type"] == "tool":
        return next(t for t in tools if t["name"] == choice["name"])
    if choice["type"] == "any":
        return tools[rng.randrange(len(tools))]
    # auto: use a tool when the last user turn names it, and not right after a tool result, so that
    # tool-running loops end with a text answer.
    if prompt.last_user_has_tool_result:
        return None
    asked = prompt.last_user_text.lower()
    return next((t for t in tools if t["name"].lower() in asked), None)


def _value_for_schema(schema: Any, rng: random.Random, root: dict[str, Any], depth: int) -> Any:
    """A value that validates against a JSON schema (the subset tool schemas use)."""
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        return _value_for_schema(_resolve_ref(root, schema["$ref"]), rng, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][rng.randrange(len(schema["enum"]))]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            return _value_for_schema(schema[combinator][0], rng, root, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return _object_for_schema(schema, rng, root, depth)
    if kind == "array":
        count = max(schema.get("minItems", 1), 1 if depth < 4 else 0)
        count = min(count, schema.get("maxItems", count))
        return [_value_for_schema(schema.get("items", {}), rng, root, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number_for_schema(schema, rng, integer=kind == "integer")
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string_for_schema(schema, rng)


def _number_for_schema(schema: dict[str, Any], rng: random.Random, *, integer: bool) -> int | float:
    """A number inside the schema's bounds (inclusive or exclusive); near zero when it sets none."""
    step = 1 if integer else 0.01
    low: float | None = schema.get("minimum")
    high: float | None = schema.get("maximum")
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        low = (
            max(low, schema["exclusiveMinimum"] + step)
            if low is not None
            else schema["exclusiveMinimum"] + step
        )
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        high = (
            min(high, schema["exclusiveMaximum"] - step)
            if high is not None
            else schema["exclusiveMaximum"] - step
        )
    if low is None:
        low = min(0.0, high - 100) if high is not None else 0.0
    if high is None or high < low:
        high = low + 100
    if integer:
        return rng.randint(math.ceil(low), max(math.ceil(low), math.floor(high)))
    value = round(rng.uniform(low, high), 2)
    return min(max(value, low), high)


def _object_for_schema(schema: dict[str, Any], rng: random.Random, root: dict[str, Any], depth: int) -> Any:
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    value: dict[str, Any] = {}
    for name, sub in properties.items():
        if name in required or (depth < 2 and rng.random() < 0.5):
            value[name] = _value_for_schema(sub, rng, root, depth + 1)
    return value


def _string_for_schema(schema: dict[str, Any], rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00Z"
    if fmt == "date":
        return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if fmt == "email":
        return f"{rng.choice(_WORDS)}@example.com"
    if fmt in ("uri", "url"):
        return f"https://example.com/{rng.choice(_WORDS)}"
    words = " ".join(rng.choice(_WORDS) for _ in range(1 + rng.randrange(3)))
    minimum = int(schema.get("minLength", 0))
    maximum = int(schema.get("maxLength", 10_000))
    text = (words + " " + words * (minimum // max(len(words), 1) + 1))[: max(minimum, len(words))]
    return text[:maximum] if len(text) > maximum else text


def _resolve_ref(root: dict[str, Any], ref: str) -> Any:
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        if not isinstance(node, dict):
            return {}
        node = node.get(part, {})
    return node
